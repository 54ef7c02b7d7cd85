"""The closed loop's timeline: every unanswered request is counted by cause, and the block stands out."""

from platform_assets.use_cases.loan_default.loop import DayReport, timeline_text, unanswered


def test_unanswered_requests_are_counted_by_cause_and_the_timeline_is_framed():
    day = DayReport("2026-11-02", sent=500, answered=497, errors={400: 2, "ConnectTimeout": 1}, serving_version="1")
    assert unanswered(day.errors) == "no answer 3: 400 invalid row 2, ConnectTimeout 1"
    assert "sent   500  ok   497  no answer 3: 400 invalid row 2" in day.line()
    clean = DayReport("2026-11-03", sent=500, answered=500, errors={})
    assert unanswered(clean.errors) == "" and "no answer" not in clean.line()
    block = timeline_text([day, clean]).splitlines()
    assert block[0] == block[2] == block[-1] == "=" * 100 and "CLOSED-LOOP TIMELINE" in block[1]
    assert block[3] == day.line() and block[4] == clean.line()
