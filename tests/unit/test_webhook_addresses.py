"""Which webhook URLs and addresses are refused: the internal network, unless allowed."""

from __future__ import annotations

import ipaddress

import pytest

from app.infrastructure.webhook_http import check_url, refusal
from domain.errors import InvalidWebhookUrl


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud's metadata service
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/in", "https"),
        ("ftp://hooks.example.com/in", "https"),
        ("https://127.0.0.1/in", "loopback"),
        ("https://[::1]:8443/in", "loopback"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://10.0.0.7/in", "private"),
        ("https://localhost/in", "private"),
        ("https://user:pw@hooks.example.com/in", "password"),
        ("https:///in", "no host"),
        ("https://hooks.example.com:99999/in", "not a URL"),
        ("https://hooks.example.com/in#x", "fragment"),
        ("https://hooks.example.com/" + "a" * 2048, "2048"),
    ],
)
def test_urls_a_webhook_may_not_have_are_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=why):
        check_url(url, allow_private=False)


def test_https_to_a_public_name_is_accepted_and_the_setting_opens_http_and_private_addresses() -> None:
    assert check_url("https://hooks.example.com/in?x=1", allow_private=False)
    assert check_url("http://127.0.0.1:8080/in", allow_private=True)
    assert check_url("http://localhost:8080/in", allow_private=True)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("::10.0.0.1", "private"),
        ("::ffff:0:7f00:1", "loopback"),  # IPv4-translated (SIIT), ::ffff:0:0:0/96
        ("::ffff:0:a9fe:a9fe", "link-local"),  # the metadata service, translated
        ("64:ff9b::7f00:1", "loopback"),  # NAT64's well-known prefix
        ("64:ff9b::10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4: the IPv4 address in bits 16-48
        ("2002:a9fe:a9fe::1", "link-local"),
        ("2002:c0a8:101:1::1", "private"),
        ("fec0::1", "site-local"),  # deprecated, yet routed inside some networks
        ("fed0::1", "site-local"),
    ],
)
def test_ipv6_forms_of_internal_addresses_are_unwrapped_and_refused(address: str, why: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"])
def test_ipv6_forms_of_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url", ["https://[::127.0.0.1]/in", "https://[64:ff9b::a00:1]/in", "https://[fec0::1]/"]
)
def test_urls_naming_an_ipv6_form_of_an_internal_address_are_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match="private"):
        check_url(url, allow_private=False)
