"""`make conformance`: the SCIM conformance suites that identity providers publish, run against scimledger.

Not part of `make test`: it installs third-party tools (newman from npm, scim2-tester from PyPI) under
`.conformance/`, and it reports counts and failures rather than asserting them.
"""
