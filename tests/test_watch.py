"""Watchlists: rules parsed or refused with the entry named, rules matched on tiny frames (chispa-free: a
handful of rows, expected hits written out by hand), the digest's text, its id and its sending to a real
local webhook receiver, and the command's refusals. The daily schedule that records and sends hits,
retries a refused digest and sends nothing twice is in tests/test_daily.py."""

from __future__ import annotations

import http.server
import threading
from datetime import datetime

import pytest

from test_e2e import _capture
from ttb_spark import cli
from ttb_spark.gold.stage import CHANGE_KINDS
from ttb_spark.settings import SettingsError
from ttb_spark.watch import digest, rules
from ttb_spark.watch.hits import like_pattern, matches

COLAS = (
    "ttb_id string, permit_number string, company_name string, brand_name string, fanciful_name string, class_type_code string, "
    "family string, origin_code string, origin_description string, state string"
)
CHANGES = "ttb_id string, observed_at timestamp, receipt_date date, status string, change_type string"
SEEN = datetime(2024, 3, 5, 12, 0)


class Receiver:
    """A webhook endpoint on 127.0.0.1 answering each POST with the next status of ``answers`` (then 200)."""

    def __init__(self, *answers: int) -> None:
        self.answers, self.posts = list(answers), []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.posts.append((self.path, self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook/SECRET-TOKEN-42"

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_rule_file_is_parsed_or_refused_naming_the_entry():
    text = '[[watch]]\nname = "oak"\nbrands = ["OLD *"]\nchanges = ["new"]\n\n[[watch]]\nname = "gone"\nchanges = ["withdrawn", "removed"]\n'
    oak, gone = rules.parse(text, "w.toml")
    assert (oak.brands, oak.changes, gone.brands, gone.changes) == (("OLD *",), ("new",), (), ("withdrawn", "removed"))
    assert rules.parse('[[watch]]\nname = "all"\n', "w.toml")[0].changes == rules.KINDS == tuple(dict.fromkeys(CHANGE_KINDS.values()))
    refusals = {
        '[[watch]]\nname = "a"\nbrand = ["x"]\n': "invalid watchlist w.toml: watch.0.brand: Extra inputs are not permitted",
        '[[watch]]\nname = "a"\nchanges = ["newish"]\n': "invalid watchlist w.toml: watch.0.changes.0: Input should be",
        '[[watch]]\nname = "a"\nstates = [" "]\n': "invalid watchlist w.toml: watch.0.states: an empty value matches nothing",
        '[[watch]]\nname = "a"\n[[watch]]\nname = "a"\n': "invalid watchlist w.toml: watch: rule names must be unique: 'a' given twice",
        "watch = [": "invalid watchlist w.toml: ",
        "": "invalid watchlist w.toml: watch: Field required",
    }
    for text, message in refusals.items():
        with pytest.raises(SettingsError) as refused:
            rules.parse(text, "w.toml")
        assert str(refused.value).startswith(message), text


def test_glob_patterns_become_like_patterns_that_take_sql_wildcards_literally():
    assert like_pattern("old *") == "OLD %"
    assert like_pattern("a?c_100%\\") == "A_C\\_100\\%\\\\"


def test_rules_match_changes_by_every_criterion_they_give(spark):
    colas = spark.createDataFrame([
        ("24001001000001", "KY-I-1", "Oak Distilling", "OLD OAK", "RYE", "101", "WHISKY", "KY", "KENTUCKY", "KY"),
        ("24001001000002", "NY-I-2", "Cidery 100% Inc", "NEW_OAK", None, "80", "CIDER", "IT", "ITALY", "NY"),
    ], COLAS)  # fmt: skip
    changes = spark.createDataFrame([
        ("24001001000001", SEEN, None, "APPROVED", "initial"),
        ("24001001000002", SEEN, None, "APPROVED", "initial"),
        ("24001001000002", datetime(2024, 3, 9), None, None, "rejected"),
        ("24001001000003", SEEN, None, None, "withdrawn"),  # no attributes known
    ], CHANGES)  # fmt: skip
    watch = rules.parse("""
        [[watch]]
        name = "oak brands"
        brands = ["*oak"]
        changes = ["new"]
        [[watch]]
        name = "italian or kentucky, by description or code"
        origins = ["italy", "KY"]
        states = ["NY"]
        [[watch]]
        name = "percent in a name is a percent"
        companies = ["*100% *"]
        class_types = ["80"]
        [[watch]]
        name = "every removal"
        changes = ["withdrawn", "removed"]
        [[watch]]
        name = "whisky families"
        families = ["whisky"]
        permits = ["KY-I-1", "XX"]
        changes = ["status_changed"]
    """, "w.toml")  # fmt: skip
    found = {(r.rule, r.ttb_id, r.change, r.company_name, r.run_id, r.sent_at) for r in matches(changes, colas, watch, "run-1").collect()}
    assert found == {
        ("oak brands", "24001001000001", "new", "Oak Distilling", "run-1", None),
        ("oak brands", "24001001000002", "new", "Cidery 100% Inc", "run-1", None),
        ("italian or kentucky, by description or code", "24001001000002", "new", "Cidery 100% Inc", "run-1", None),
        ("italian or kentucky, by description or code", "24001001000002", "removed", "Cidery 100% Inc", "run-1", None),
        ("percent in a name is a percent", "24001001000002", "new", "Cidery 100% Inc", "run-1", None),
        ("percent in a name is a percent", "24001001000002", "removed", "Cidery 100% Inc", "run-1", None),
        ("every removal", "24001001000002", "removed", "Cidery 100% Inc", "run-1", None),
        ("every removal", "24001001000003", "withdrawn", None, "run-1", None),
    }  # the whisky rule: no status change among them


def _hit(ttb_id: str, rule: str = "r", change: str = "new") -> dict:
    return {"rule": rule, "ttb_id": ttb_id, "observed_at": SEEN, "change": change, "status": "APPROVED", "brand_name": "OLD OAK",
            "fanciful_name": None, "company_name": "OAK", "permit_number": "KY-I-1"}


def test_a_digest_lists_each_hit_with_its_registry_page_under_an_id_its_hits_decide():
    hits = [_hit("24001001000001"), _hit("24001001000002", rule="s", change="withdrawn")]
    assert digest.digest_id(hits) == digest.digest_id(list(reversed(hits))) != digest.digest_id(hits[:1])
    title, body = digest.message(hits, "abc", "https://www.ttbonline.gov/colasonline/")
    assert title == "TTB COLA watchlist: 2 change(s)"
    assert "[s] withdrawn -> APPROVED: OLD OAK, OAK (KY-I-1)\n  https://www.ttbonline.gov/colasonline/viewColaDetails.do?action=publicDisplaySearchAdvanced&ttbid=24001001000002" in body
    with pytest.raises(ValueError):
        digest.message([_hit("2400100100000X")], "abc", "https://example.org/")  # no unvalidated ID reaches a URL


def test_a_digest_is_sent_only_when_every_target_accepts_it_and_the_urls_come_from_the_environment(monkeypatch):
    with Receiver(500) as receiver:
        assert not digest.send([receiver.url], "t", "b")  # refused
        assert digest.send([receiver.url], "t", "b")
        assert not digest.send(["not-a-url"], "t", "b")
        assert [path for path, _ in receiver.posts] == ["/hook/SECRET-TOKEN-42"] * 2
    monkeypatch.setenv(digest.NOTIFY_URLS, "json://a/b, mailto://c@d  ")
    assert digest.notify_urls() == ["json://a/b", "mailto://c@d"]


def test_a_bad_watchlist_stops_the_daily_job_before_anything_starts(tmp_path, monkeypatch):
    lake = tmp_path / "lakehouse"
    monkeypatch.setenv("TTB_WATCHLIST_FILE", str(tmp_path / "missing.toml"))
    code, _, err = _capture(lambda: cli.main(["daily", "--env", "test", "--since-last-run", "--lakehouse-root", str(lake)]))
    assert code == 2 and err.startswith(f"ttb_spark daily: error: invalid setting TTB_WATCHLIST_FILE: cannot read {tmp_path / 'missing.toml'}")
    (tmp_path / "w.toml").write_text('[[watch]]\nname = "a"\nfamily = ["GIN"]\n')
    monkeypatch.setenv("TTB_WATCHLIST_FILE", str(tmp_path / "w.toml"))
    code, _, err = _capture(lambda: cli.main(["daily", "--env", "test", "--since-last-run", "--lakehouse-root", str(lake)]))
    assert code == 2 and err.strip() == f"ttb_spark daily: error: invalid watchlist {tmp_path / 'w.toml'}: watch.0.family: Extra inputs are not permitted"
    assert not lake.exists()  # no session, no table


def test_only_the_daily_job_watches(spark, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ttb_spark.ops.after_run import after_run_watch
    from ttb_spark.settings import load_settings

    settings = load_settings("test", {"pipeline": {"lakehouse_root": str(tmp_path / "lakehouse")}})
    watch = rules.parse('[[watch]]\nname = "all"\n', "w.toml")
    with Receiver() as receiver:
        monkeypatch.setenv(digest.NOTIFY_URLS, receiver.url)
        for job in ("pipeline", "analytics", "gold", "raw"):
            assert after_run_watch(job, spark, settings, SimpleNamespace(run_id="r"), watch) is None
        assert after_run_watch("daily", spark, settings, SimpleNamespace(run_id="r"), ()) is None
        assert after_run_watch("daily", spark, settings, SimpleNamespace(run_id="r"), watch) == {"hits": 0, "pending": 0, "sent": 0}
    assert receiver.posts == [] and not (tmp_path / "lakehouse").exists()


def test_a_watchlist_is_read_from_an_s3_object_too(s3_server, s3_bucket):
    import boto3

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").put_object(
        Bucket=s3_bucket, Key="conf/watch.toml", Body=b'[[watch]]\nname = "gin"\nfamilies = ["GIN"]\n')
    assert [r.families for r in rules.load(f"s3://{s3_bucket}/conf/watch.toml", "us-east-1", s3_server)] == [("GIN",)]
    with pytest.raises(SettingsError, match=f"cannot read s3://{s3_bucket}/conf/missing.toml"):
        rules.load(f"s3://{s3_bucket}/conf/missing.toml", "us-east-1", s3_server)
