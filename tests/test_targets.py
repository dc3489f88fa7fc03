"""mchat.targets.Port: the implementation installed wins over the default created meanwhile."""

import threading

from mchat.targets import Port

creating, release = threading.Event(), threading.Event()


def slow_default():
    """A default whose creation takes a while (a publisher connecting, say)."""
    creating.set()
    assert release.wait(10)
    return "default"


def test_an_install_while_the_default_is_created_is_not_overwritten(settings):
    settings.MCHAT_TEST_SLOW_PORT = "tests.test_targets:slow_default"
    port: Port[str] = Port("MCHAT_TEST_SLOW_PORT")
    creating.clear()
    release.clear()
    first_use = threading.Thread(target=port.current)
    first_use.start()
    assert creating.wait(10)
    installing = threading.Thread(target=port.install, args=("installed",))
    installing.start()
    installing.join(0.3)  # time to install, unless it waits for the creation to end
    release.set()
    first_use.join(10)
    installing.join(10)
    assert port.current() == "installed"
