"""A stand-in for the live Okta org that Okta's CRUD test drives.

The CRUD test creates a person in an Okta org through Okta's own API, assigns them to the app, updates, deactivates,
reactivates and unassigns them, and after each action checks on the SCIM server what Okta sent. Here no Okta org
exists: each Okta API step is played by sending the SCIM requests Okta's provisioning sends for that action, as
Okta's SCIM guide and the OIN requirements describe them (the same shapes as tests/e2e's Okta tests), so that the
test's own SCIM checks run unchanged. The Okta API steps' assertions (Okta's answers) are reported as skipped.
"""

from __future__ import annotations

import random
import string
from typing import Any

import httpx

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def okta_user_body(user_name: str, given_name: str, family_name: str, external_id: str) -> dict[str, Any]:
    """The body Okta POSTs to /Users when an admin assigns the app to a person (Okta's SCIM guide)."""
    return {
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given_name, "familyName": family_name},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": f"{given_name} {family_name}",
        "locale": "en-US",
        "externalId": external_id,
        "groups": [],
        "password": "Abcde12345",
        "active": True,
    }


def provision_like_okta(base_url: str, authorization: str, user_name: str) -> None:
    """Assign one person as Okta does: the user Okta's spec test reads first, before creating its own."""
    response = httpx.post(
        f"{base_url}/Users",
        headers={"Authorization": authorization, "Content-Type": "application/scim+json"},
        json=okta_user_body(user_name, "First", "User", "00u" + "0" * 17),
        timeout=30,
    )
    response.raise_for_status()


def okta_crud_variables(rng: random.Random, base_url: str, authorization: str) -> dict[str, str]:
    """The environment the CRUD test expects its tester to fill in: a new person each run."""
    first = "Runscope" + "".join(rng.choice(string.digits) for _ in range(3))
    last = rng.choice(string.ascii_uppercase) + "".join(rng.choice(string.ascii_lowercase) for _ in range(8))
    return {
        "SCIMUrl": base_url,
        "SCIMAuth": authorization,
        "okta_user_firstname": first,
        "okta_user_firstname_update": first + "update",
        "okta_user_lastname": last,
        "okta_user_email": f"{first}.{last}@atko.com".lower(),
        "okta_user_title": "Engineer",
        "okta_user_primaryphone": "415-555-0100",
    }


class OktaOrgStandIn:
    """The Okta org of the CRUD test, for one person: it remembers whether they are assigned, and their SCIM id."""

    def __init__(self, base_url: str, authorization: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": authorization, "Content-Type": "application/scim+json"}
        self.assigned = False
        self.scim_id: str | None = None

    def handles(self, step: dict[str, Any]) -> bool:
        return str(step.get("url", "")).startswith("{{oktaOrgUrl}}")

    def play(self, step: dict[str, Any], variables: dict[str, str], client: httpx.Client) -> str:
        note = step["note"].strip()
        sent: list[httpx.Response] = []
        if note == "Add new random user to Okta":
            variables["okta_add_userid"] = "00u" + "".join(random.choices(string.ascii_letters, k=17))
        elif note == "Assign user to SCIM App":
            sent.append(self._get(client, params={"filter": f'userName eq "{variables["okta_user_email"]}"'}))
            found = sent[-1].json().get("Resources", [])
            if not found:
                sent.append(self._create(client, variables))
                self.scim_id = sent[-1].json().get("id")
            else:
                self.scim_id = found[0]["id"]
                if not found[0].get("active", True):
                    sent.append(self._set_active(client, True))
            self.assigned = True
        elif note == "Update user firstname" and self.assigned:
            sent.append(self._get(client, path=f"/{self.scim_id}"))
            user = sent[-1].json()
            user["name"]["givenName"] = variables["okta_user_firstname_update"]
            user["displayName"] = (
                f"{variables['okta_user_firstname_update']} {variables['okta_user_lastname']}"
            )
            user["active"] = True
            user.pop("meta", None)
            sent.append(client.put(f"{self.base_url}/Users/{self.scim_id}", headers=self.headers, json=user))
        elif (
            note in ("Deactivate user in Okta", "Removes an assignment for a user in Okta") and self.assigned
        ):
            # Deactivating the person in Okta unassigns them from every app; either way Okta deactivates the
            # app user with a pathless replace.
            sent.append(self._set_active(client, False))
            self.assigned = False
        # "Check SCIM Apps instance" and "Reactivate user in okta" send nothing to the app: a person reactivated
        # in Okta comes back to the app when assigned again (the next step).
        return (
            "stood in (Okta's API is not reachable here) by sending what Okta sends:\n"
            + "\n".join(
                f"{response.request.method} {response.request.url} -> {response.status_code}"
                for response in sent
            )
            if sent
            else "stood in: Okta sends nothing to the app for this action"
        )

    def _get(
        self, client: httpx.Client, path: str = "", params: dict[str, str] | None = None
    ) -> httpx.Response:
        return client.get(f"{self.base_url}/Users{path}", headers=self.headers, params=params)

    def _create(self, client: httpx.Client, variables: dict[str, str]) -> httpx.Response:
        body = okta_user_body(
            variables["okta_user_email"],
            variables["okta_user_firstname"],
            variables["okta_user_lastname"],
            variables["okta_add_userid"],
        )
        return client.post(f"{self.base_url}/Users", headers=self.headers, json=body)

    def _set_active(self, client: httpx.Client, active: bool) -> httpx.Response:
        body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]}
        return client.patch(f"{self.base_url}/Users/{self.scim_id}", headers=self.headers, json=body)
