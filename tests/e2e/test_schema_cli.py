"""`scimledger schema extend|list|show` as an org admin runs them: the real process, the real database."""

from __future__ import annotations

import getpass
import json
import uuid
from pathlib import Path

from app.cli.exits import ExitCode
from tests.service import run_cli

ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def schema_file(directory: Path, *names: str, urn: str = ACME) -> str:
    path = directory / f"schema-{uuid.uuid4().hex[:6]}.json"
    attributes = [{"name": name, "type": "string"} for name in names]
    path.write_text(json.dumps({"id": urn, "name": "AcmeUser", "attributes": attributes}))
    return str(path)


LISTING_HEADER = ("urn", "version", "attributes", "declared_at", "declared_by")


def test_an_admin_declares_lists_shows_and_redeclares_a_schema(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    org = f"schema-cli-{uuid.uuid4().hex[:8]}"
    run_cli(cli_env, "org", "create", org)
    assert run_cli(cli_env, "schema", "list", "--org", org).stdout.split() == list(LISTING_HEADER)

    declared = run_cli(cli_env, "schema", "extend", "--org", org, "--file", schema_file(tmp_path, "costCode"))
    assert f"declared schema '{ACME}'" in declared.stdout
    assert "version 1" in declared.stdout
    again = run_cli(cli_env, "schema", "extend", "--org", org, "--file", schema_file(tmp_path, "costCode"))
    assert "unchanged" in again.stdout
    assert "version 1" in again.stdout
    replaced = run_cli(
        cli_env, "schema", "extend", "--org", org, "--file", schema_file(tmp_path, "costCode", "region")
    )
    assert "version 2" in replaced.stdout

    table = run_cli(cli_env, "schema", "list", "--org", org).stdout.splitlines()
    assert table[0].split() == list(LISTING_HEADER)
    assert table[1].split()[:4] == [ACME, "2", "costCode,", "region"]
    assert table[1].endswith(f"admin:{getpass.getuser()}")
    listed = json.loads(run_cli(cli_env, "schema", "list", "--org", org, "--format", "json").stdout)
    assert [(entry["urn"], entry["version"], entry["attributes"]) for entry in listed] == [
        (ACME, 2, ["costCode", "region"])
    ]
    shown = json.loads(run_cli(cli_env, "schema", "show", "--org", org, ACME.upper()).stdout)
    assert shown["id"] == ACME
    assert [attribute["name"] for attribute in shown["attributes"]] == [
        "costCode",
        "region",
    ]

    # The audit history tells when the schema was declared, and by whom.
    history = run_cli(cli_env, "audit", "history", "--org", org, "--format", "jsonl").stdout
    changes = [(row["type"], row["actor"], row["change"]) for row in map(json.loads, history.splitlines())]
    assert [change[:2] for change in changes] == [
        ("OrgSchemaDeclared", f"admin:{getpass.getuser()}"),
        ("OrgSchemaRedeclared", f"admin:{getpass.getuser()}"),
    ]
    assert changes[1][2] == f"schema '{ACME}' declared again (version 2): costCode, region"


def test_a_bad_schema_file_is_refused_naming_the_attribute_and_nothing_is_declared(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    org = f"schema-cli-{uuid.uuid4().hex[:8]}"
    run_cli(cli_env, "org", "create", org)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": ACME, "attributes": [{"name": "badge", "type": "number"}]}))
    refused = run_cli(cli_env, "schema", "extend", "--org", org, "--file", str(bad), check=False)
    assert refused.returncode == ExitCode.REFUSED
    assert "Attribute 'badge': unknown type 'number'" in refused.stderr
    clash = run_cli(
        cli_env,
        "schema",
        "extend",
        "--org",
        org,
        "--file",
        schema_file(tmp_path, "x", urn="urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
        check=False,
    )
    assert clash.returncode == ExitCode.REFUSED
    assert "defines itself" in clash.stderr
    missing = run_cli(
        cli_env, "schema", "extend", "--org", org, "--file", str(tmp_path / "nope.json"), check=False
    )
    assert missing.returncode == ExitCode.REFUSED
    assert "Cannot read the schema file" in missing.stderr
    assert run_cli(cli_env, "schema", "list", "--org", org).stdout.split() == list(LISTING_HEADER)
    unknown = run_cli(cli_env, "schema", "show", "--org", org, ACME, check=False)
    assert unknown.returncode == ExitCode.REFUSED
    assert "declared no schema" in unknown.stderr


def test_a_redeclaration_stored_values_could_not_satisfy_is_refused_and_the_declaration_stays(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    org = f"schema-cli-{uuid.uuid4().hex[:8]}"
    run_cli(cli_env, "org", "create", org)
    run_cli(cli_env, "schema", "extend", "--org", org, "--file", schema_file(tmp_path, "badgeNumber"))
    integer = tmp_path / "integer.json"
    integer.write_text(json.dumps({"id": ACME, "attributes": [{"name": "badgeNumber", "type": "integer"}]}))
    refused = run_cli(cli_env, "schema", "extend", "--org", org, "--file", str(integer), check=False)
    assert refused.returncode == ExitCode.REFUSED
    assert "Attribute 'badgeNumber'" in refused.stderr
    assert "declare a new attribute name" in refused.stderr
    recased_file = schema_file(tmp_path, "badgeNumber", urn=ACME.upper())
    recased = run_cli(cli_env, "schema", "extend", "--org", org, "--file", recased_file, check=False)
    assert recased.returncode == ExitCode.REFUSED
    assert f"already declared as '{ACME}'" in recased.stderr
    listed = json.loads(run_cli(cli_env, "schema", "list", "--org", org, "--format", "json").stdout)
    assert [(entry["urn"], entry["version"]) for entry in listed] == [(ACME, 1)]
