"""SCIM 2.0 protocol (RFC 7643/7644): schemas, filters, PATCH. Pure: no I/O, imports nothing of ours."""
