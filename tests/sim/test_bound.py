"""Kumar-Ross bound, by hand."""

import math

from peer.simulate.bound import kumar_ross


def test_each_term_can_bind() -> None:
    # F=100, u_s=10: F/u_s = 10.
    assert kumar_ross(100, 10, [100, 100], [1000, 1000]) == 10
    # d_min = 4: F/d_min = 25.
    assert kumar_ross(100, 10, [100], [4]) == 25
    # N=10 peers uploading 1 each: 10*100/(10+10) = 50.
    assert kumar_ross(100, 10, [1] * 10, [1000] * 10) == 50
    assert kumar_ross(100, 10, [], []) == 0
    assert math.isinf(kumar_ross(100, 0, [1], [1]))
