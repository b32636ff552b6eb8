"""This plugin's components against tsekit's shared contracts.

The ``gate`` fusion is crossed with every site of every installed backbone.
"""

import pytest
from tsekit.testing import conformance_cases


@pytest.mark.parametrize("case", conformance_cases(provider="example"))
def test_conformance(case):
    case.run()


def test_cases_cover_both_components():
    ids = [p.id for p in conformance_cases(provider="example")]
    assert "encoder-example:mfcc-mean" in ids
    assert "fusion-example:gate" in ids
    assert any(i.startswith("site-") and i.endswith("-example:gate") for i in ids)
