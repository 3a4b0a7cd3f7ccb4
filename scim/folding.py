# ruff: noqa: RUF002 -- confusable letters are what these compare
"""What "ignoring case" means everywhere: one folding, for the database and for Python alike.

userName, displayName and every other caseExact-false string (RFC 7643 §2.2) compare by their *folded*
forms: NFKC, then Unicode full case folding (`str.casefold`, CaseFolding.txt's C and F mappings, not the
Turkic ones), then NFKC again. RFC 7643 says only "case-insensitive"; what Okta and Entra need is that the
same folding decides `userName eq` and uniqueness, since they search, then create when nothing was found.
The default (not a locale's) folding, because a server cannot know the person's language: `İlker`
matches `i̇lker` (İ folds to i + U+0307), dotless `ı` stays apart from `i`, Σ, σ and ς fold alike, ß folds
to ss. NFKC makes compatibility forms equal to what they stand for: full-width ＡＢＣ is abc, ﬁ is fi.

PostgreSQL's `lower()` depends on the database's collation (`İ` lowers to `i` under C.UTF-8, to `i̇` under
ICU) and its `casefold()` exists only from PostgreSQL 18, so the database side is not built from them: the
migration defines `scim_fold(text)`, IMMUTABLE, from the mapping `sql_function()` generates from this
module's tables, using only collation-free functions (`normalize`, `replace`, `translate`, and `lower`
under the C collation, which changes ASCII only). The unique indexes and every comparison use it, so the
index and the comparison agree; Python folds the parameters and the in-memory PATCH filters with `fold`.
A test checks the two agree on every assigned code point.
"""

from __future__ import annotations

import itertools
import sys
import unicodedata


def fold(text: str) -> str:
    """`text` as compared ignoring case: NFKC, case-folded, NFKC again (which re-composes what folding split)."""
    if text.isascii():
        return text.lower()  # what the slow path gives for ASCII, ten times faster
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


# The code point ranges whose mappings the database applies separately, each only when the text holds one of
# the code points it maps. PostgreSQL's `translate` scans its whole list for each character of the text, so
# the lists are kept short where names are common: a capital in Latin-1 costs 30 mappings rather than 1,300
# (4 µs a name rather than 150, measured), and a name with no capital outside ASCII none.
_RANGES = (
    *(0x80, 0x100, 0x180, 0x250, 0x400, 0x460, 0x530, 0x1E00, 0x1E80, 0x1F00, 0x2000, 0x10000),
    sys.maxunicode + 1,
)


def _foldings() -> list[tuple[int, int, dict[str, str], dict[str, str]]]:
    """By range: the code points that case folding changes to one code point, and those it changes to several
    (ß → ss). Only non-ASCII code points that NFKC leaves alone are listed: the others never survive the NFKC
    that comes first. Folding is per code point, and a folded code point folds to itself, so the order in
    which the mappings are applied does not matter."""
    ranges = []
    for low, high in itertools.pairwise(_RANGES):
        single: dict[str, str] = {}
        multiple: dict[str, str] = {}
        for code_point in range(low, high):
            if 0xD800 <= code_point <= 0xDFFF:
                continue
            character = chr(code_point)
            folded = character.casefold()
            if folded != character and unicodedata.normalize("NFKC", character) == character:
                (single if len(folded) == 1 else multiple)[character] = folded
        ranges.append((low, high, single, multiple))
    return ranges


def _escaped(text: str) -> str:
    return "".join(
        character
        if " " <= character <= "~" and character not in "'\\"
        else (f"\\{ord(character):04X}" if ord(character) <= 0xFFFF else f"\\+{ord(character):06X}")
        for character in text
    )


def _bracket_expression(characters: list[str]) -> str:
    """A regular expression matching any of `characters` (all non-ASCII), as runs of consecutive code points."""
    code_points = sorted(map(ord, characters))
    runs: list[list[int]] = []
    for code_point in code_points:
        if runs and runs[-1][1] == code_point - 1:
            runs[-1][1] = code_point
        else:
            runs.append([code_point, code_point])
    return "[" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in runs) + "]"


def _literal(text: str) -> str:
    """A Unicode-escaped SQL literal, so that the migration is plain ASCII whatever encoding reads it."""
    return f"U&'{_escaped(text)}'"


def sql_function() -> str:
    """The CREATE FUNCTIONs of `scim_fold`, the SQL twin of `fold`, as migration 0010 holds them.

    `scim_fold` is a one-expression SQL function, so PostgreSQL inlines it and folds ASCII (nearly every
    userName) with `lower` under C; other text goes to `scim_fold_unicode`, which maps each range's code
    points only when the text holds one of those that fold (a regular expression test costs far less than
    a `translate`): an address already in lower case, accents and all, is translated nowhere."""
    steps = []
    foldings = _foldings()
    every = [character for _, _, single, multiple in foldings for character in (*single, *multiple)]
    for _, _, single, multiple in foldings:
        expression = "folded"
        for source, target in multiple.items():
            expression = f"replace({expression}, {_literal(source)}, {_literal(target)})"
        if single:
            sources, targets = "".join(single), "".join(single.values())
            expression = f"translate({expression}, {_literal(sources)}, {_literal(targets)})"
        if single or multiple:
            mapped = _escaped(_bracket_expression([*multiple, *single]))
            steps.append(f"    IF folded ~ U&'{mapped}' THEN\n        folded := {expression};\n    END IF;\n")
    return (
        "CREATE FUNCTION scim_fold_unicode(value text) RETURNS text\n"
        "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE\n"
        "AS $fold$\n"
        "DECLARE\n"
        '    folded text := lower(normalize(value, NFKC) COLLATE "C");\n'
        "BEGIN\n"
        f"    IF folded !~ U&'{_escaped(_bracket_expression(every))}' THEN\n"
        # Lowering ASCII may have made something to compose: J with a caron has no precomposed capital.
        "        RETURN normalize(folded, NFKC);\n"
        "    END IF;\n"
        f"{''.join(steps)}"
        "    RETURN normalize(folded, NFKC);\n"
        "END\n"
        "$fold$;\n\n"
        "CREATE FUNCTION scim_fold(value text) RETURNS text\n"
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
        'RETURN CASE WHEN octet_length(value) = char_length(value) THEN lower(value COLLATE "C")\n'
        "ELSE scim_fold_unicode(value) END;\n"
    )
