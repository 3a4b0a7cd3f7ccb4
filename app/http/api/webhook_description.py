"""The webhook routes' part of /openapi.json (app/http/openapi.py merges it beside app/http/api/description.py,
whose conventions and helpers it uses)."""

from __future__ import annotations

from typing import Any

import msgspec

from app.http.api.description import _ORG, _PAGING, _REF, _op, _page_of, _path_param
from app.http.api.webhook_routes import (
    CreatedWebhook,
    DeliveryOutput,
    ReplayInput,
    RotatedSecret,
    WebhookChange,
    WebhookInput,
    WebhookOutput,
)

_WEBHOOK = _path_param("webhook", "The webhook endpoint's id.")


def paths() -> dict[str, Any]:
    base = "/api/v1/orgs/{org}/webhooks"
    one = {"parameters": [_ORG, _WEBHOOK]}
    return {
        base: {
            "parameters": [_ORG],
            "get": _op(
                "apiListWebhooks",
                "The organization's webhook endpoints (never their secrets).",
                {200: ("A page of webhook endpoints.", "WebhookPage")},
                parameters=_PAGING,
            ),
            "post": _op(
                "apiCreateWebhook",
                "Create a webhook endpoint: every later event of its types is delivered to it, in order, signed "
                "as Standard Webhooks says. The answer holds its signing secret, once.",
                {201: ("The endpoint and its secret.", "CreatedWebhook")},
                body="WebhookInput",
                post=True,
            ),
        },
        f"{base}/{{webhook}}": {
            **one,
            "get": _op("apiGetWebhook", "A webhook endpoint.", {200: ("The endpoint.", "WebhookOutput")}),
            "patch": _op(
                "apiUpdateWebhook",
                "Change a webhook endpoint's url, event types or description (those given).",
                {200: ("The endpoint.", "WebhookOutput")},
                body="WebhookChange",
            ),
            "delete": _op(
                "apiRemoveWebhook",
                "Delete a webhook endpoint and its delivery log.",
                {204: ("Deleted.", None)},
            ),
        },
        f"{base}/{{webhook}}/rotate": {
            **one,
            "post": _op(
                "apiRotateWebhookSecret",
                "A new signing secret, in the answer once; the previous one also signs for 24 hours.",
                {200: ("The new secret.", "RotatedSecret")},
                post=True,
            ),
        },
        f"{base}/{{webhook}}/pause": {
            **one,
            "post": _op(
                "apiPauseWebhook",
                "Stop delivering; events wait, in order, until it is resumed.",
                {200: ("The endpoint.", "WebhookOutput")},
                post=True,
            ),
        },
        f"{base}/{{webhook}}/resume": {
            **one,
            "post": _op(
                "apiResumeWebhook",
                "Deliver again from where it stopped (a disabled endpoint: the event it gave up on first).",
                {200: ("The endpoint.", "WebhookOutput")},
                post=True,
            ),
        },
        f"{base}/{{webhook}}/replay": {
            **one,
            "post": _op(
                "apiReplayWebhook",
                "Deliver again from an event (its webhook-id) or after a feed cursor, onwards, in order, with the same ids.",
                {200: ("The endpoint.", "WebhookOutput")},
                body="ReplayInput",
                post=True,
            ),
        },
        f"{base}/{{webhook}}/deliveries": {
            **one,
            "get": _op(
                "apiListWebhookDeliveries",
                "The endpoint's delivery attempts, newest first: time, status, duration, error.",
                {200: ("A page of attempts.", "DeliveryPage")},
                parameters=_PAGING,
            ),
        },
    }


def schemas() -> dict[str, Any]:
    _, definitions = msgspec.json.schema_components(
        [
            WebhookInput,
            WebhookChange,
            ReplayInput,
            WebhookOutput,
            CreatedWebhook,
            RotatedSecret,
            DeliveryOutput,
        ],
        ref_template=_REF,
    )
    return {
        **{"Api" + name: schema for name, schema in definitions.items()},
        "ApiWebhookPage": _page_of("WebhookOutput"),
        "ApiDeliveryPage": _page_of("DeliveryOutput"),
    }
