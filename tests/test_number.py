"""number.format, number.policy, number.identity and the policy file: no server needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clihelp import CliResult, cli, registered

from diag.errors import UsageError
from diag.policy import NumberFacts, Policy, RuleSet, evaluate, load_policy
from diag.report import schema

NUMBER_CHECKS = registered("number.format", "number.policy", "number.identity")
GB_FIXED = "+442079460123"  # Ofcom drama range, London
GB_MOBILE = "+447400123456"
GB_PREMIUM = "+449098790123"  # premium rate
DE_FIXED = "+4930123456"


def facts(e164: str, country: str, kind: str) -> NumberFacts:
    return NumberFacts(e164, country, kind)


# (policy, number, permitted, rule named)
POLICY_CASES: list[tuple[Policy, NumberFacts, bool, str]] = [
    (Policy("allow"), facts(GB_FIXED, "GB", "fixed_line"), True, 'default = "allow"'),
    (Policy("deny"), facts(GB_FIXED, "GB", "fixed_line"), False, 'default = "deny"'),
    (
        Policy("deny", allow=RuleSet(prefixes=("+44",))),
        facts(GB_FIXED, "GB", "fixed_line"),
        True,
        'allow.prefixes "+44"',
    ),
    (
        Policy("deny", allow=RuleSet(countries=("GB",))),
        facts(DE_FIXED, "DE", "fixed_line"),
        False,
        'default = "deny"',
    ),
    (
        Policy("deny", allow=RuleSet(types=("mobile",))),
        facts(GB_MOBILE, "GB", "mobile"),
        True,
        'allow.types "mobile"',
    ),
    # deny wins over every allow, even an explicitly listed number
    (
        Policy(
            "allow", allow=RuleSet(numbers=(GB_PREMIUM,)), deny=RuleSet(types=("premium_rate",))
        ),
        facts(GB_PREMIUM, "GB", "premium_rate"),
        False,
        'deny.types "premium_rate"',
    ),
    (
        Policy("allow", allow=RuleSet(prefixes=("+4420",)), deny=RuleSet(countries=("GB",))),
        facts(GB_FIXED, "GB", "fixed_line"),
        False,
        'deny.countries "GB"',
    ),
    # within one side the most specific rule is named: number, longest prefix, type, country
    (
        Policy("allow", deny=RuleSet(numbers=(GB_FIXED,), prefixes=("+44",), countries=("GB",))),
        facts(GB_FIXED, "GB", "fixed_line"),
        False,
        f'deny.numbers "{GB_FIXED}"',
    ),
    (
        Policy("deny", allow=RuleSet(prefixes=("+44", "+44207", "+4420"))),
        facts(GB_FIXED, "GB", "fixed_line"),
        True,
        'allow.prefixes "+44207"',
    ),
    (
        Policy("deny", allow=RuleSet(types=("fixed_line",), countries=("GB",))),
        facts(GB_FIXED, "GB", "fixed_line"),
        True,
        'allow.types "fixed_line"',
    ),
    (
        Policy("deny", allow=RuleSet(countries=("GB",)), deny=RuleSet(prefixes=("+4490",))),
        facts(GB_PREMIUM, "GB", "premium_rate"),
        False,
        'deny.prefixes "+4490"',
    ),
    # a prefix is a prefix of the E.164 digits, not a substring
    (
        Policy("deny", allow=RuleSet(prefixes=("+20",))),
        facts(GB_FIXED, "GB", "fixed_line"),
        False,
        'default = "deny"',
    ),
]


@pytest.mark.parametrize(("policy", "number", "permitted", "rule"), POLICY_CASES)
def test_policy_evaluation_follows_deny_wins_then_specificity_then_default(
    policy: Policy, number: NumberFacts, permitted: bool, rule: str
) -> None:
    decision = evaluate(policy, number)
    assert (decision.permitted, decision.rule) == (permitted, rule)


POLICY = """\
# permitted numbers for the contact centre
default = "deny"

[allow]
countries = ["GB", "IE"]
numbers = ["+49 30 123456"]

[deny]
types = ["premium_rate"]
prefixes = ["+4420794601"]
"""


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_policy_file_loads_with_normalised_values(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, POLICY))
    assert policy.default == "deny"
    assert policy.allow == RuleSet(numbers=("+4930123456",), countries=("GB", "IE"))
    assert policy.deny == RuleSet(prefixes=("+4420794601",), types=("premium_rate",))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('default = "deny"\n[allow\ntypes = []\n', "line 2, column 7"),
        ('default = "maybe"\n', 'policy {path} line 1: default must be "allow" or "deny"'),
        ('default = "deny"\n\n[allow]\ntypes = ["premium"]\n', "policy {path} line 4: unknown"),
        ('default = "deny"\n[deny]\nprefixes = ["0044"]\n', "policy {path} line 3: deny.prefixes"),
        ('default = "deny"\n[allow]\ncountries = ["GBR"]\n', "policy {path} line 3: allow.count"),
        ('default = "deny"\n[allow]\nnumber = ["+44"]\n', "policy {path} line 3: unknown key"),
        ('default = "deny"\nallowed = []\n', "policy {path} line 2: unknown key 'allowed'"),
        ('[allow]\nprefixes = "+44"\n', "policy {path} line 2: 'allow.prefixes' must be a list"),
    ],
)
def test_a_malformed_policy_is_a_usage_error_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_policy(path)
    assert message.format(path=path) in str(caught.value)


def run(*args: str, registry: Any = NUMBER_CHECKS) -> CliResult:
    return cli("check", "--format", "json", *args, registry=registry)


def by_id(r: CliResult, check_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in r.json["checks"] if c["id"] == check_id)
    return found


def test_check_only_number_works_without_any_server(tmp_path: Path) -> None:
    policy = write(tmp_path, POLICY)
    r = cli(
        "check", "--only", "number", "--number", GB_MOBILE, "--policy", str(policy),
        "--format", "json",
    )  # fmt: skip
    assert r.code == 0, r.err
    statuses = {c["id"]: c["status"] for c in r.json["checks"]}
    assert statuses == {
        "number.format": "pass",
        "number.policy": "pass",
        "number.identity": "skip",  # no --user
        "number.dial-test": "skip",  # never without --dial-test
    }
    assert r.json["findings"] == []
    assert by_id(r, "number.dial-test")["summary"] == "no test-call number configured"


def test_format_reports_e164_type_and_country_of_each_number() -> None:
    r = run("--number", "020 7946 0123", "--number", GB_MOBILE, "--region", "GB")
    check = by_id(r, "number.format")
    assert check["status"] == "pass"
    first, second = check["details"]["numbers"]
    assert (first["e164"], first["country"], first["type"]) == (GB_FIXED, "GB", "fixed_line")
    assert (second["type"], second["valid"], second["possible"]) == ("mobile", True, True)
    assert check["summary"] == f"valid: {GB_FIXED} (GB, fixed line), {GB_MOBILE} (GB, mobile)"


def test_the_report_keeps_the_numbers_as_typed_and_adds_them_in_e164_or_null() -> None:
    typed = ["020 7946 0123", GB_MOBILE, "agent-one", "+44 1632 960123"]
    r = run(*(a for n in typed for a in ("--number", n)), "--region", "gb")
    jsonschema.validate(r.json, schema())
    assert r.json["agent"]["numbers"] == typed
    # Parsed with --region as number.format does; a number outside any range still has a form.
    assert r.json["agent"]["numbers_e164"] == [GB_FIXED, GB_MOBILE, None, "+441632960123"]


def test_without_numbers_the_report_has_an_empty_e164_list() -> None:
    r = run()
    assert (r.json["agent"]["numbers"], r.json["agent"]["numbers_e164"]) == ([], [])


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("020 7946 0123", "it has no country code (write it as +CC…, or set --region)"),
        ("agent-one", "it is not a phone number"),
        ("+44 20 7946 01234567", "it is too long"),
        ("+44 1632 960123", "it is in no number range allocated in GB"),
        ("+999 1234", "+999 is no country code"),
        ("+", "it is not a phone number"),
    ],
)
def test_an_unusable_number_is_number_invalid_naming_the_number_and_why(
    number: str, why: str
) -> None:
    r = run("--number", number)
    assert r.code == 1
    check = by_id(r, "number.format")
    assert check["status"] == "fail"
    assert check["summary"] == f"invalid agent number: {number}: {why}"
    assert sorted(r.causes()) == ["number.invalid"]
    finding = r.json["findings"][0]
    assert number in finding["explanation"] and why in finding["explanation"]


def test_a_denied_number_is_not_permitted_naming_the_rule(tmp_path: Path) -> None:
    policy = write(tmp_path, POLICY)
    r = run("--number", GB_FIXED, "--number", "+44 909 879 0123", "--policy", str(policy))
    assert r.code == 1
    check = by_id(r, "number.policy")
    assert check["summary"] == (
        f'not permitted: {GB_FIXED} denied by deny.prefixes "+4420794601"; '
        f'{GB_PREMIUM} denied by deny.types "premium_rate"'
    )
    assert sorted(r.causes()) == ["number.not_permitted"]
    assert 'deny.prefixes "+4420794601"' in r.json["findings"][0]["explanation"]


def test_a_number_no_rule_matches_follows_the_default(tmp_path: Path) -> None:
    policy = write(tmp_path, POLICY)
    r = run("--number", "+33 1 23 45 67 89", "--policy", str(policy))
    check = by_id(r, "number.policy")
    assert check["status"] == "fail"
    assert check["details"]["numbers"][0]["rule"] == 'default = "deny"'
    allowed = write(tmp_path, POLICY.replace('"deny"', '"allow"', 1), "allow.toml")
    assert (
        by_id(run("--number", "+33 1 23 45 67 89", "--policy", str(allowed)), "number.policy")[
            "status"
        ]
        == "pass"
    )


def test_a_malformed_policy_exits_64_with_the_line_and_still_no_traceback(tmp_path: Path) -> None:
    policy = write(tmp_path, 'default = "deny"\n[allow]\ntypes = ["premium"]\n')
    r = cli("check", "--only", "number", "--number", GB_FIXED, "--policy", str(policy))
    assert r.code == 64
    assert r.err.startswith(f"sipdiag: error: policy {policy} line 3: unknown number type")
    assert "(hint: use one of fixed_line, mobile" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


def test_a_policy_with_a_toml_syntax_error_exits_64_naming_line_and_column(tmp_path: Path) -> None:
    policy = write(tmp_path, 'default = "deny"\n[deny\n')
    r = cli("check", "--only", "number", "--number", GB_FIXED, "--policy", str(policy))
    assert r.code == 64
    assert f"policy {policy} is not valid TOML" in r.err and "(at line 2, column 6)" in r.err


def test_identity_passes_when_the_sip_user_is_the_agent_number_in_national_form() -> None:
    r = run("--number", GB_FIXED, "--user", "02079460123", "--region", "GB", "--domain", "pbx")
    check = by_id(r, "number.identity")
    assert check["status"] == "pass"
    assert check["details"]["user_e164"] == GB_FIXED
    assert check["summary"] == f"the registration sip:02079460123@pbx is {GB_FIXED}"


def test_a_number_the_registration_does_not_cover_is_identity_mismatch() -> None:
    r = run("--number", GB_FIXED, "--number", GB_MOBILE, "--user", GB_FIXED, "--domain", "pbx")
    assert r.code == 1
    check = by_id(r, "number.identity")
    assert check["status"] == "fail"
    assert check["summary"] == (
        f"the registration sip:{GB_FIXED}@pbx ({GB_FIXED}) does not cover {GB_MOBILE}"
    )
    assert [n["covered"] for n in check["details"]["numbers"]] == [True, False]
    assert sorted(r.causes()) == ["number.identity_mismatch"]


def test_identity_skips_a_non_numeric_sip_user_with_the_reason() -> None:
    check = by_id(run("--number", GB_FIXED, "--user", "alice"), "number.identity")
    assert check["status"] == "skip"
    assert check["summary"].startswith("SIP user 'alice' is not a number")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--region", "XX"), "sipdiag: error: unknown --region 'XX'"),
        (("--dial-max-duration", "0"), "--dial-max-duration must be between 0 and 60"),
        (("--dial-max-duration", "61"), "--dial-max-duration must be between 0 and 60"),
        (("--dial-test", "1000", "--dial-test", "1001"), "a run places at most one test call"),
        (("--dial-test", "<sip:x>"), "invalid --dial-test '<sip:x>'"),
    ],
)
def test_bad_number_flags_exit_64_with_one_line(args: tuple[str, ...], message: str) -> None:
    r = cli("check", "--only", "number", "--number", GB_FIXED, *args)
    assert r.code == 64
    assert message in r.err and len(r.err.strip().splitlines()) == 1


def test_a_test_call_cannot_be_a_profile_default(tmp_path: Path) -> None:
    profile = write(tmp_path, 'dial_test = "+442079460123"\n', "profile.toml")
    r = cli("check", "--profile", str(profile), "--only", "number")
    assert r.code == 64
    assert "unknown key(s): dial_test" in r.err


def test_region_policy_and_max_duration_come_from_the_profile(tmp_path: Path) -> None:
    write(tmp_path, POLICY)
    profile = write(
        tmp_path,
        'numbers = ["020 7946 0999"]\nregion = "GB"\npolicy = "policy.toml"\n'
        "dial_max_duration = 2.5\n",
        "profile.toml",
    )
    r = cli("check", "--profile", str(profile), "--only", "number", "--format", "json")
    assert by_id(r, "number.format")["details"]["numbers"][0]["e164"] == "+442079460999"
    assert by_id(r, "number.policy")["details"]["numbers"][0]["rule"] == 'allow.countries "GB"'


def test_no_password_prompt_when_no_test_call_will_be_placed() -> None:
    """On a terminal, only a SIP check that will run may prompt: `number.dial-test` without
    --dial-test must not (a prompt here would read pytest's captured stdin and break the run)."""
    import io

    from diag.cli import Environment, run_cli

    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={}, stdin_isatty=True)
    code = run_cli(
        ["check", "--only", "number", "--number", GB_MOBILE, "--user", "alice",
         "--registrar", "sip:127.0.0.1:9", "--format", "json"],
        env,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    assert "password" not in err.getvalue().lower()
