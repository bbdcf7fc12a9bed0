"""`ikev2 completion bash`: the script, sourced by a real bash, completes subcommands and each
one's options as the parser has them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ikev2.cli import build_parser


def complete(script: str, *words: str) -> list[str]:
    array = " ".join(f"'{w}'" for w in words)
    probe = f"{script}\nCOMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _ikev2\n"
    probe += 'printf "%s\\n" "${COMPREPLY[@]}"\n'
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_follows_the_parser() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ikev2.cli", "completion", "bash"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    script = done.stdout
    assert script.rstrip().endswith("complete -o filenames -F _ikev2 ikev2")
    assert complete(script, "ikev2", "list-") == ["list-sas", "list-pools", "list-conns",
                                                  "list-certs"]  # fmt: skip
    assert complete(script, "ikev2", "check") == ["check-config"]
    assert complete(script, "ikev2", "daemon", "--lo") == ["--log-format", "--log-level"]
    assert complete(script, "ikev2", "rekey", "--re") == ["--reauth"]
    every = complete(script, "ikev2", "")
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    assert every == list(sub.choices)  # type: ignore[arg-type]
