"""Every registered component against the shared contracts (tsekit.testing)."""

import pytest

from tsekit.testing import conformance_cases


@pytest.mark.parametrize("case", conformance_cases())
def test_conformance(case):
    case.run()
