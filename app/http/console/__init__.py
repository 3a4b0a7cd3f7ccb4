"""The web console (issue 22): server-rendered pages for the customer's IT admin, the org admin and the
auditor, signed into by one-time links, on the same services as the management API and the CLI."""
