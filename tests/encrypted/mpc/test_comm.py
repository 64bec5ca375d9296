import pytest

from veil.encrypted.mpc.ring import MPCError


def test_only_rank_0_takes_a_listening_socket():
    from veil.encrypted.mpc.comm import GlooComm

    with pytest.raises(MPCError, match="only rank 0"):
        GlooComm(1, 2, "127.0.0.1:1", listen_fd=3)
