"""The User (with the Enterprise User extension) and Group resources of RFC 7643 §4, as this service serves
them: data in the metamodel of scim/schema.py."""

from __future__ import annotations

from scim.resource_type import ResourceType
from scim.schema import IMMUTABLE, READ_ONLY, WRITE_ONLY, Attribute, Schema, multi_valued

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"


ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


USER_SCHEMA = Schema(
    CORE_USER,
    "User",
    "User Account",
    (
        Attribute(
            "userName",
            required=True,
            uniqueness="server",
            description="Unique identifier for the User, used to sign in. Unique per organization, ignoring case.",
        ),
        Attribute(
            "name",
            "complex",
            description="The components of the user's real name.",
            sub_attributes=tuple(
                Attribute(sub, description=f"The {sub} of the User's name.")
                for sub in (
                    "formatted",
                    "familyName",
                    "givenName",
                    "middleName",
                    "honorificPrefix",
                    "honorificSuffix",
                )
            ),
        ),
        Attribute("displayName", description="The name of the User, suitable for display to end-users."),
        Attribute("nickName", description="The casual way to address the user."),
        Attribute(
            "profileUrl", "reference", reference_types=("external",), description="The User's profile URL."
        ),
        Attribute("title", description="The user's title, such as 'Vice President'."),
        Attribute("userType", description="The organization-to-user relationship."),
        Attribute("preferredLanguage", description="The User's preferred written or spoken language."),
        Attribute("locale", description="The User's default location, e.g. 'en-US'."),
        Attribute("timezone", description="The User's time zone in the IANA Time Zone database format."),
        Attribute(
            "active",
            "boolean",
            description=(
                "The User's administrative status. A PATCH that removes it leaves it unassigned, which counts "
                "as not active: the user is deactivated, and the resource shows no 'active' until a client "
                "sets it again (a PATCH setting it to true reactivates)."
            ),
        ),
        Attribute(
            "password",
            mutability=WRITE_ONLY,
            returned="never",
            description="Accepted from clients such as Okta and never stored or returned.",
        ),
        multi_valued("emails", "Email addresses for the user", ("work", "home", "other")),
        multi_valued(
            "phoneNumbers",
            "Phone numbers for the User",
            ("work", "home", "mobile", "fax", "pager", "other"),
        ),
        multi_valued(
            "ims",
            "Instant messaging addresses for the User",
            ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
        ),
        multi_valued(
            "photos", "URLs of photos of the User", ("photo", "thumbnail"), "reference", ("external",)
        ),
        Attribute(
            "addresses",
            "complex",
            multi_valued=True,
            description="A physical mailing address for this User.",
            sub_attributes=(
                *(
                    Attribute(sub)
                    for sub in (
                        "formatted",
                        "streetAddress",
                        "locality",
                        "region",
                        "postalCode",
                        "country",
                    )
                ),
                Attribute("type", canonical_values=("work", "home", "other")),
                Attribute("primary", "boolean"),
            ),
        ),
        Attribute(
            "groups",
            "complex",
            multi_valued=True,
            mutability=READ_ONLY,
            description="The groups the user belongs to, managed through the Group resource.",
            sub_attributes=(
                Attribute("value", mutability=READ_ONLY),
                Attribute("$ref", "reference", mutability=READ_ONLY, reference_types=("Group",)),
                Attribute("display", mutability=READ_ONLY),
                Attribute("type", mutability=READ_ONLY, canonical_values=("direct", "indirect")),
            ),
        ),
        multi_valued("entitlements", "A list of entitlements for the User", ()),
        multi_valued("roles", "A list of roles for the User", ()),
        multi_valued("x509Certificates", "A list of certificates issued to the User", (), "binary"),
    ),
)


ENTERPRISE_USER_SCHEMA = Schema(
    ENTERPRISE_USER,
    "EnterpriseUser",
    "Enterprise User",
    (
        Attribute("employeeNumber", description="Numeric or alphanumeric identifier assigned to a person."),
        Attribute("costCenter", description="Identifies the name of a cost center."),
        Attribute("organization", description="Identifies the name of an organization."),
        Attribute("division", description="Identifies the name of a division."),
        Attribute("department", description="Identifies the name of a department."),
        Attribute(
            "manager",
            "complex",
            description="The User's manager.",
            sub_attributes=(
                Attribute(
                    "value", description="The id of the SCIM resource representing the User's manager."
                ),
                # value and $ref are the client's, readWrite as RFC 7643 §8.7.2 declares them. displayName is
                # readOnly: a client's is not kept, and the service does not fill it either, since a copy of
                # the manager's name would go stale whenever the manager's own resource changes.
                Attribute(
                    "$ref",
                    "reference",
                    reference_types=("User",),
                    description="The URI of the manager's User resource, as the client sent it.",
                ),
                Attribute(
                    "displayName",
                    mutability=READ_ONLY,
                    description="Not returned: the manager's name is on the manager's own User resource.",
                ),
            ),
        ),
    ),
)


USER = ResourceType("User", "/Users", "User Account", USER_SCHEMA, (ENTERPRISE_USER_SCHEMA,))


GROUP_SCHEMA = Schema(
    CORE_GROUP,
    "Group",
    "Group",
    (
        Attribute(
            "displayName",
            required=True,
            mutability=IMMUTABLE,
            description="'<prefix>-<Project>-<Role>'. Set by the app; a client may send it but not change it.",
        ),
        Attribute(
            "members",
            "complex",
            multi_valued=True,
            description="The users who hold this Project × Role.",
            sub_attributes=(
                Attribute(
                    "value", mutability=IMMUTABLE, case_exact=True, description="The id of a member User."
                ),
                Attribute("$ref", "reference", mutability=IMMUTABLE, reference_types=("User",)),
                Attribute("display", mutability=READ_ONLY),
                Attribute("type", mutability=IMMUTABLE, canonical_values=("User",)),
            ),
        ),
    ),
)


GROUP = ResourceType("Group", "/Groups", "A Project × Role group of the app", GROUP_SCHEMA)
