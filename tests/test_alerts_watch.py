"""What the alert watch raises from the monitor's state: changes only (a collector's heartbeats stopped and
resumed, its broker connection lost and restored, a source stale and back), one alert for a dead collector
rather than one per source, and nothing about collectors while the monitor's own bus is down."""

from __future__ import annotations

from alerts.messages import Alert
from alerts.watch import AlertWatch
from models.status import CollectorStatus, PublisherStatus
from monitor.state import MonitorState
from tests.test_monitor_health import NOW, heartbeat


def with_publisher(status: CollectorStatus, connected: bool = True, reconnects: int = 0) -> CollectorStatus:
    publisher = status.publisher.model_copy(update={"connected": connected, "reconnects": reconnects})
    return status.model_copy(update={"publisher": PublisherStatus.model_validate(publisher.model_dump())})


class Watched:
    def __init__(self) -> None:
        self.state = MonitorState()
        self.alerts: list[Alert] = []
        self.bus_up = True
        self.watch = AlertWatch(self.state, self.alerts.append, 0.0, "http://monitor/ui", lambda: self.bus_up)

    def kinds(self) -> list[str]:
        return [alert.kind for alert in self.alerts]


def test_heartbeats_stopped_once_and_resumed_once_with_no_alert_per_source() -> None:
    watched = Watched()
    watched.state.add_heartbeat(heartbeat(age=0.1, interval=5.0), NOW)
    watched.watch.check(NOW + 1_000)
    assert watched.alerts == []  # first sight: a baseline, not news
    for at in (NOW + 16_000, NOW + 20_000, NOW + 30_000):  # 3 intervals without a heartbeat
        watched.watch.check(at)
    assert watched.kinds() == ["heartbeats_stopped"]
    assert watched.alerts[0].subject == "collector c" and watched.alerts[0].figures["last heartbeat"] == "16 s ago"
    watched.state.add_heartbeat(heartbeat(age=0.1, interval=5.0), NOW + 31_000)
    watched.watch.check(NOW + 31_500)
    assert watched.kinds() == ["heartbeats_stopped", "heartbeats_resumed"]
    assert watched.alerts[1].figures["silent for"] == "15 s"


def test_a_stale_source_then_back() -> None:
    watched = Watched()
    watched.state.add_heartbeat(heartbeat(age=0.1), NOW)
    watched.watch.check(NOW)
    watched.state.add_heartbeat(heartbeat(age=0.1, stale_symbols=["BTC/USDT:USDT"]), NOW + 5_000)
    watched.watch.check(NOW + 5_000)
    watched.state.add_heartbeat(heartbeat(age=0.1, stale_symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"]), NOW + 10_000)
    watched.watch.check(NOW + 10_000)  # still stale: nothing new
    watched.state.add_heartbeat(heartbeat(age=0.1), NOW + 15_000)
    watched.watch.check(NOW + 15_000)
    assert watched.kinds() == ["source_stale", "source_back"]
    stale, back = watched.alerts
    assert (stale.subject, stale.figures["status"], stale.figures["stale symbols"]) == ("binance", "stale", 1)
    assert back.figures["bad for"] == "10 s"


def test_a_collector_losing_and_regaining_the_broker() -> None:
    watched = Watched()
    watched.state.add_heartbeat(with_publisher(heartbeat(age=0.1)), NOW)
    watched.watch.check(NOW)
    watched.state.add_heartbeat(with_publisher(heartbeat(age=0.1), connected=False), NOW + 5_000)
    watched.watch.check(NOW + 5_000)
    watched.state.add_heartbeat(with_publisher(heartbeat(age=0.1), reconnects=1), NOW + 10_000)
    watched.watch.check(NOW + 10_000)
    # lost and back between two heartbeats (none could be sent meanwhile): the reconnect count tells
    watched.state.add_heartbeat(with_publisher(heartbeat(age=0.1), reconnects=2), NOW + 15_000)
    watched.watch.check(NOW + 15_000)
    assert watched.kinds() == ["broker_lost", "broker_restored", "broker_restored"]
    assert watched.alerts[-1].figures == {"reconnects": 2}


def test_while_the_monitor_is_off_the_bus_it_judges_no_collector() -> None:
    watched = Watched()
    watched.bus_up = False  # the monitor starts before RabbitMQ answers: no alert for that
    watched.watch.check(NOW - 5_000)
    watched.bus_up = True
    watched.state.add_heartbeat(heartbeat(age=0.1), NOW)
    watched.watch.check(NOW)
    watched.bus_up = False
    watched.watch.check(NOW + 30_000)  # no heartbeats reach it: not the collector's fault
    watched.bus_up = True
    watched.state.add_heartbeat(heartbeat(age=0.1), NOW + 42_000)
    watched.watch.check(NOW + 42_000)
    assert watched.kinds() == ["broker_lost", "broker_restored"]
    assert watched.alerts[0].subject == "the monitor's own connection to RabbitMQ"
    assert watched.alerts[1].figures == {"down for": "12 s"}
