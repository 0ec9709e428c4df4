"""Account rules: how strong a password must be, and which display names may be used.

Why zxcvbn: length alone lets ``aaaaaaaaaa``, ``password12`` and ``0000000000`` through. zxcvbn
(Dropbox's estimator, pure Python, packaged by Debian as python3-zxcvbn) knows the common
password lists, keyboard walks, repeats, sequences, dates and l33t substitutions, and is
given the account's own names so a password built from them scores low. Admins, who can
add accounts and clear throttles, need a longer and stronger password than staff.

Why display names are normalised: the display name is what the audit log, the dashboard
("Approved by ...") and the district see. Two accounts must not be able to show the same
name, including look-alikes: names are compared after NFKC + casefold and after mapping
the Cyrillic and Greek letters that look like Latin ones, and a name mixing letters of
two scripts (``Ѕam`` with a Cyrillic S) is refused outright.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

from zxcvbn import zxcvbn

from controller.vocabulary import Role

MIN_LENGTH: dict[str, int] = {Role.STAFF: 10, Role.ADMIN: 12}
MIN_SCORE: dict[str, int] = {Role.STAFF: 2, Role.ADMIN: 3}           # zxcvbn: 0 too guessable .. 4 very unguessable
MAX_LENGTH = 256
ZXCVBN_MAX = 72                                # zxcvbn's own input limit; the rest only adds strength
CONTEXT_WORDS = ["entry", "buzzer", "door", "panel", "school", "office", "admin", "staff", "password"]
SCORE_WORDS = ["too easy to guess", "too easy to guess", "still easy to guess", "fairly strong", "strong"]

# Scripts that are written together in one name (Japanese; Korean with Hanja).
COMBINED_SCRIPTS = ({"CJK", "HIRAGANA", "KATAKANA"}, {"HANGUL", "CJK"})

# Letters of other scripts that look like Latin letters (a subset of Unicode's confusables.txt
# for Cyrillic and Greek, the look-alikes a keyboard or a copy-paste can produce).
_LOOKALIKE = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ү": "y",
    "ӏ": "l", "ɡ": "g", "ο": "o", "α": "a", "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "β": "b", "ε": "e", "η": "n", "μ": "u", "ζ": "z", "γ": "y",
})


class PolicyError(ValueError):
    """A refused password or name; the message is safe to show and says how to fix it."""


def check_password(password: object, role: str = "staff", names: Iterable[str] = ()) -> str:
    """The password if it is long and strong enough for ``role``; PolicyError saying why not.

    ``names`` are the account's username and display name: a password containing one is refused.
    """
    if not isinstance(password, str):
        raise PolicyError("password: missing")
    minimum = MIN_LENGTH.get(role, MIN_LENGTH["admin"])
    if not minimum <= len(password) <= MAX_LENGTH:
        raise PolicyError(f"password: use {minimum} to {MAX_LENGTH} characters for a{'n' if role == 'admin' else ''} "
                          f"{role} account")
    folded = password.casefold()
    words = [w for n in names for w in [n.casefold(), *n.casefold().split()] if len(w) >= 3]
    for word in words:
        if word in folded:
            raise PolicyError("password: must not contain the username or display name")
    if len(set(folded)) < 4:
        raise PolicyError("password: uses too few different characters")
    result = zxcvbn(password[:ZXCVBN_MAX], user_inputs=[*words, *CONTEXT_WORDS])
    score = int(result.get("score", 0))
    need = MIN_SCORE.get(role, MIN_SCORE["admin"])
    if score < need:
        feedback = result.get("feedback") or {}
        hint = feedback.get("warning") or " ".join(feedback.get("suggestions") or [])
        raise PolicyError(f"password: {SCORE_WORDS[score]} (strength {score} of 4, {role} accounts need "
                          f"{need}){'; ' + hint.rstrip('.') if hint else ''}. Use a few unrelated words "
                          "or a password manager")
    return password


def _script(ch: str) -> str:
    """The script of one letter, from its Unicode name ('LATIN', 'CYRILLIC', 'CJK', ...)."""
    try:
        return unicodedata.name(ch).split()[0]
    except ValueError:
        return "UNKNOWN"


def check_display_name(name: object) -> str:
    """A clean display name (NFKC, trimmed, one script); PolicyError if not usable."""
    if not isinstance(name, str):
        raise PolicyError("display name: missing")
    clean = " ".join(unicodedata.normalize("NFKC", name).split())
    if not 1 <= len(clean) <= 60 or not clean.isprintable():
        raise PolicyError("display name: use 1-60 printable characters")
    if any(unicodedata.category(ch) in ("Cf", "Co", "Cn", "Cs") for ch in clean):
        raise PolicyError("display name: contains invisible or unassigned characters")
    scripts = {_script(ch) for ch in clean if ch.isalpha()}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in COMBINED_SCRIPTS):
        raise PolicyError(f"display name: mixes letters of {', '.join(sorted(s.title() for s in scripts))} "
                          "scripts (look-alike letters); write it in one script")
    return clean


def name_key(name: str) -> str:
    """What two names are compared by: NFKC + casefold, look-alike letters mapped, spaces dropped."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(folded.translate(_LOOKALIKE).split())
