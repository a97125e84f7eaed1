"""The worst-case samples SMS are checked with: the longest dates Babel writes, and UCS-2 ones."""

from __future__ import annotations

from datetime import date

from babel.dates import format_date

from orchestrator.template_check import worst_case_days, worst_case_samples


def test_spanish_is_checked_on_the_longest_weekday_and_on_saturday_whose_name_forces_ucs2() -> None:
    days = worst_case_days("es")

    assert [format_date(d, "EEE d MMM", locale="es") for d in days] == [
        "mié 23 sept",  # miércoles / septiembre: the longest names
        "sáb 26 sept",  # sábado: the longest with a letter outside GSM-7
    ]


def test_english_has_no_name_outside_gsm7_so_only_the_longest_day_is_checked() -> None:
    assert worst_case_days("en") == (date(2026, 9, 23),)  # Wednesday, September


def test_each_day_is_checked_for_the_patient_and_for_a_caregiver() -> None:
    samples = worst_case_samples("es", "Clinic")

    assert [(s.appointment_on.day, s.caregiver, s.location) for s in samples] == [
        (23, None, "Clinic"),
        (23, "daughter", "Clinic"),
        (26, None, "Clinic"),
        (26, "daughter", "Clinic"),
    ]
