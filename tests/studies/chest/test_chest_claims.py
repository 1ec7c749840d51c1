"""The chest study's claims: which orders are tested, on which metrics, for the methods a config runs."""

from medrepro.studies.chest.claims import chest_claims, claim_orders

ALL = ["Unregistered", "SimpleElastix", "RegNet", "CE-RegNet", "AE-RegNet", "AC-RegNet"]


def test_every_claim_of_the_paper_is_tested_on_every_metric():
    orders = claim_orders(ALL)
    assert ("AC-RegNet", "AE-RegNet", "CE-RegNet") in orders
    for aware in ("CE-RegNet", "AE-RegNet", "AC-RegNet"):
        assert (aware, "RegNet") in orders and (aware, "SimpleElastix") in orders
    for learned in ("RegNet", "CE-RegNet", "AE-RegNet", "AC-RegNet"):
        assert (learned, "Unregistered") in orders
    assert ("SimpleElastix", "RegNet") in orders  # Table 1: elastix above RegNet in every dataset
    claims = chest_claims("JSRT", ALL)
    assert len(claims) == 3 * len(orders)
    directions = {(c.metric, c.higher_is_better) for c in claims}
    assert directions == {("dsc", True), ("hd", False), ("assd", False)}
    assert all(c.label.startswith("JSRT: ") and c.study == "chest" for c in claims)
    assert all(c.where == {"dataset": "JSRT"} for c in claims)  # judged on JSRT's pairs only


def test_claims_naming_a_method_not_run_are_left_out():
    orders = claim_orders(["Unregistered", "SimpleElastix", "RegNet", "AC-RegNet"])
    assert all(set(o) <= {"Unregistered", "SimpleElastix", "RegNet", "AC-RegNet"} for o in orders)
    assert ("AC-RegNet", "RegNet") in orders and not any("AE-RegNet" in o for o in orders)
