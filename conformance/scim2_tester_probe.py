"""Run scim2-tester's `check_server` exactly as `scim2 test` does, and print each result as a JSON line.

This file runs under the interpreter of `.conformance/venv`, where scim2-cli and scim2-tester are installed;
`scim2 test` prints neither the resource type of a check nor machine-readable statuses, which the report needs.
Usage: python scim2_tester_probe.py BASE_URL (the token in the SCIM_AUTHORIZATION environment variable).
"""

import json
import os
import sys

from scim2_cli.session import Session
from scim2_tester import check_server


def main() -> None:
    session = Session(
        url=sys.argv[1],
        headers={"Authorization": os.environ["SCIM_AUTHORIZATION"]},
        verify=True,
        schemas=None,
        resource_types=None,
        service_provider_config=None,
    )
    # The defaults of `scim2 test`: check status codes and content types.
    client = session.client
    client.check_response_status_codes = True
    client.check_response_content_type = True
    for result in check_server(client):
        print(
            json.dumps(
                {
                    "status": result.status.name,
                    "title": result.title,
                    "reason": result.reason,
                    "resource_type": result.resource_type,
                    "data": repr(result.data)[:600] if result.data is not None else None,
                }
            )
        )


if __name__ == "__main__":
    main()
