"""A realistic, deterministic model of school districts' device activity, usable as a library.

Districts have schools, classes and students (synthetic names); some students have two devices.
Each device lives a school day: it logs in, focuses an app, sends a heartbeat about every 10 s of
event time, switches apps by a Markov chain over a catalogue (~30 apps, ~50 web sites with URLs),
goes idle for a while, and logs out. The delivery layer then perturbs what a real fleet perturbs:
resent events (same ``event_id``), out-of-order delivery within the allowed lateness, and invalid
events.

Everything comes from one ``random.Random(seed)``: the same config gives the same items. Tests of
later stages call :func:`generate` in-process and compare with :func:`producers.truth.ground_truth`
of :func:`valid_events`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

from schemas.clock import DAY_MS
from schemas.event import APP_FOCUS, HEARTBEAT, IDLE, LOGOUT, ActivityEvent
from schemas.roster import RosterRecord

# (app, category, sub_apps). "web" is the browser; its sub_app comes from the url's host.
APPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("docs", "office", ("essay", "notes", "lab-report")),
    ("slides", "office", ("presentation", "poster")),
    ("sheets", "office", ("data", "budget")),
    ("classroom", "lms", ("stream", "classwork", "grades")),
    ("canvas", "lms", ("modules", "quizzes")),
    ("schoology", "lms", ("courses",)),
    ("seesaw", "lms", ("journal",)),
    ("meet", "video", ("call",)),
    ("zoom", "video", ("meeting",)),
    ("math-quest", "math", ("fractions", "decimals", "geometry")),
    ("ixl", "math", ("algebra", "number-sense")),
    ("prodigy", "math", ("battle", "map")),
    ("desmos", "math", ("graphing", "activity")),
    ("zearn", "math", ("lesson",)),
    ("reading-eggs", "reading", ("lesson", "library")),
    ("epic", "reading", ("book",)),
    ("newsela", "reading", ("article", "quiz")),
    ("raz-kids", "reading", ("level-a", "level-m")),
    ("duolingo", "language", ("spanish", "french")),
    ("scratch", "coding", ("project", "tutorial")),
    ("code-studio", "coding", ("course", "puzzle")),
    ("tynker", "coding", ("game",)),
    ("typing-club", "skills", ("lesson",)),
    ("quizlet", "study", ("flashcards", "learn")),
    ("kahoot", "study", ("game",)),
    ("nearpod", "study", ("lesson",)),
    ("flipgrid", "video", ("topic",)),
    ("padlet", "office", ("wall",)),
    ("calculator", "tools", ("",)),
    ("files", "tools", ("",)),
    ("web", "web", ()),
)
SITES: tuple[str, ...] = (
    "www.khanacademy.org", "en.wikipedia.org", "www.pbs.org", "code.org", "www.desmos.com",
    "www.nationalgeographic.com", "kids.nationalgeographic.com", "www.britannica.com",
    "www.brainpop.com", "www.coolmathgames.com", "www.mathplayground.com", "www.abcya.com",
    "www.funbrain.com", "www.starfall.com", "www.scholastic.com", "www.readworks.org",
    "www.commonlit.org", "www.nasa.gov", "spaceplace.nasa.gov", "www.smithsonianmag.com",
    "www.youtube.com", "www.google.com", "docs.google.com", "www.bing.com", "www.weather.gov",
    "www.noaa.gov", "www.loc.gov", "www.archives.gov", "www.ducksters.com", "www.dkfindout.com",
    "www.timeforkids.com", "www.newsela.com", "www.gutenberg.org", "www.poetryfoundation.org",
    "www.merriam-webster.com", "www.dictionary.com", "www.thesaurus.com", "www.wolframalpha.com",
    "www.geogebra.org", "phet.colorado.edu", "www.ck12.org", "www.sciencekids.co.nz",
    "www.edpuzzle.com", "www.typing.com", "www.tinkercad.com", "www.canva.com",
    "www.musictheory.net", "www.chess.com", "www.duolingo.com", "www.nytimes.com",
)  # fmt: skip
FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Katherine", "Dorothy", "Mary", "Jamal", "Priya", "Mateo", "Sofia",
    "Liam", "Olivia", "Noah", "Emma", "Aiden", "Mia", "Yuki", "Chen", "Fatima", "Omar", "Zoe",
    "Lucas", "Amara", "Ivan", "Leila", "Diego", "Hana", "Kofi", "Nora", "Ravi",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Johnson", "Vaughan", "Jackson", "Nguyen", "Patel", "Garcia",
    "Kim", "Okafor", "Smith", "Rossi", "Novak", "Haddad", "Silva", "Tanaka", "Mensah", "Larsen",
    "Cohen", "Ibrahim", "Moreau", "Kowalski", "Reyes", "Singh", "Ahmed", "Berg", "Costa",
)  # fmt: skip


@dataclass(frozen=True)
class SimulationConfig:
    """Shape of the simulated population and of the delivery perturbations."""

    seed: int = 0
    districts: int = 1
    schools_per_district: int = 2
    classes_per_school: int = 4
    students_per_class: int = 25
    classes_per_student: int = 3
    second_device_share: float = 0.15
    """Share of students with two devices (e.g. a Chromebook and a tablet)."""
    heartbeat_s: float = 10.0
    switch_prob: float = 0.08
    """Chance, at each heartbeat, of focusing another app (Markov step)."""
    idle_prob: float = 0.01
    logout_prob: float = 0.002
    dup_rate: float = 0.0
    """Share of events sent a second time (same event_id, a device retry)."""
    reorder_rate: float = 0.0
    """Share of events delivered after the device's next event, at most half the lateness late."""
    invalid_rate: float = 0.0
    """Share of extra invalid events mixed into the stream."""
    allowed_lateness_s: int = 60


class Student(NamedTuple):
    district_id: str
    student_id: str
    name: str
    school_id: str
    classes: tuple[str, ...]
    devices: tuple[str, ...]

    @property
    def roster_record(self) -> RosterRecord:
        return RosterRecord(self.name, self.classes)


class InvalidEvent(NamedTuple):
    """An event a broken device sends: ``obj`` is its JSON value, ``reason`` the expected code."""

    key: str
    obj: Any
    reason: str


SimItem = ActivityEvent | InvalidEvent
_tuple_new = tuple.__new__


def build_population(config: SimulationConfig) -> list[Student]:
    """The students of all districts (ids ``d-001``, ``s-d001-00042``, ``c-d001-s1-03`` …)."""
    rng = random.Random(f"population-{config.seed}")
    students: list[Student] = []
    for d in range(1, config.districts + 1):
        district_id = f"d-{d:03d}"
        number = 0
        for s in range(1, config.schools_per_district + 1):
            school_id = f"sch-d{d:03d}-{s}"
            classes = [f"c-d{d:03d}-s{s}-{c:02d}" for c in range(1, config.classes_per_school + 1)]
            per_school = config.classes_per_school * config.students_per_class
            for _ in range(per_school // max(1, config.classes_per_student) or 1):
                number += 1
                student_id = f"s-d{d:03d}-{number:05d}"
                taken = min(config.classes_per_student, len(classes))
                enrolled = tuple(sorted(rng.sample(classes, taken)))
                devices = [f"cb-{student_id}"]
                if rng.random() < config.second_device_share:
                    devices.append(f"tab-{student_id}")
                name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                students.append(
                    Student(district_id, student_id, name, school_id, enrolled, tuple(devices))
                )
    return students


@dataclass
class _Device:
    student: Student
    device_id: str
    next_ts: int
    seq: int = 0
    state: str = "off"  # off | active | idle
    app: str = ""
    sub_app: str = ""
    category: str = ""
    rng: random.Random = field(default_factory=random.Random)


class ActivityGenerator:
    """Device events in event-time order from ``start_ms`` on (an endless school day)."""

    def __init__(self, config: SimulationConfig, population: list[Student], start_ms: int) -> None:
        self.config = config
        self.population = population
        self._rng = random.Random(f"delivery-{config.seed}")
        self._heap: list[tuple[int, int, _Device]] = []
        order = 0
        for student in population:
            for device_id in student.devices:
                rng = random.Random(f"{config.seed}-{device_id}")
                login = start_ms + rng.randrange(0, 120_000)
                device = _Device(student, device_id, login, rng=rng)
                self._heap.append((login, order, device))
                order += 1
        heapq.heapify(self._heap)
        self._order = order

    def _event(self, device: _Device, kind: str, ts: int) -> ActivityEvent:
        device.seq += 1
        app, sub_app = (device.app, device.sub_app) if kind in (APP_FOCUS, HEARTBEAT) else ("", "")
        return ActivityEvent(
            f"{device.device_id}-{device.seq}",
            kind,
            ts,
            device.student.district_id,
            device.student.student_id,
            device.device_id,
            app,
            sub_app,
        )

    def _focus(self, device: _Device) -> None:
        rng = device.rng
        same = [a for a in APPS if a[1] == device.category and a[0] != device.app]
        app, category, sub_apps = rng.choice(same if same and rng.random() < 0.6 else APPS)
        device.app, device.category = app, category
        if app == "web":
            device.sub_app = rng.choice(SITES).removeprefix("www.")
        else:
            device.sub_app = rng.choice(sub_apps)

    def _step(self, device: _Device) -> ActivityEvent:
        """The device's next event at ``device.next_ts``; schedules the one after."""
        rng, ts, hb_ms = device.rng, device.next_ts, int(self.config.heartbeat_s * 1000)
        jitter = rng.randrange(-hb_ms // 20, hb_ms // 20 + 1)
        if device.state in ("off", "idle"):
            self._focus(device)
            device.state = "active"
            event = self._event(device, APP_FOCUS, ts)
            device.next_ts = ts + hb_ms + jitter
            return event
        roll = rng.random()
        if roll < self.config.logout_prob:
            device.state = "off"
            device.next_ts = ts + rng.randrange(300_000, 1_200_000)
            return self._event(device, LOGOUT, ts)
        if roll < self.config.logout_prob + self.config.idle_prob:
            device.state = "idle"
            device.next_ts = ts + rng.randrange(30_000, 300_000)
            return self._event(device, IDLE, ts)
        if rng.random() < self.config.switch_prob:
            self._focus(device)
            kind = APP_FOCUS
        else:
            kind = HEARTBEAT
        device.next_ts = ts + hb_ms + jitter
        return self._event(device, kind, ts)

    def events(self) -> Iterator[ActivityEvent]:
        """Valid events in event-time order (ties by device), forever."""
        heap = self._heap
        while heap:
            _, order, device = heapq.heappop(heap)
            event = self._step(device)
            heapq.heappush(heap, (device.next_ts, order, device))
            yield event

    def items(self) -> Iterator[SimItem]:
        """Events in delivery order: with resends, late-but-allowed reordering and invalid ones.

        A reordered event is held back until its device's next event, but never past the moment
        the stream's event time is half the lateness beyond it. Held until the device's next event
        only, an ``idle`` (the next event minutes later) would arrive long after its device went
        quiet: a real pipeline closes a device's last interval after a while without arrivals
        (``USAGE_CLOSE_AFTER_S``), and the delivery would no longer be a reordering but a device
        uploading a buffer after a silence, which the README's close rule counts differently from
        :func:`producers.truth.ground_truth` (the overlap stays with the earlier app).
        """
        cfg, rng = self.config, self._rng
        hold_ms = cfg.allowed_lateness_s * 1000 // 2
        held: dict[tuple[str, str, str], ActivityEvent] = {}
        holding: deque[ActivityEvent] = deque()  # held events in ts order (the stream's order)
        resend: list[ActivityEvent] = []
        for event in self.events():
            while holding and holding[0].ts + hold_ms < event.ts:
                due = holding.popleft()
                if held.get(due.device_key) is due:
                    del held[due.device_key]
                    yield due  # held long enough: delivered before this one after all
            device = event.device_key
            pending = held.pop(device, None)
            if pending is None and rng.random() < cfg.reorder_rate:
                held[device] = event
                holding.append(event)
                continue
            yield event
            if pending is not None:
                yield pending  # delivered after a newer event of its device
            if resend:
                yield resend.pop()
            if rng.random() < cfg.dup_rate:
                resend.append(event)
            if rng.random() < cfg.invalid_rate:
                yield _invalid_like(event, rng)


def _invalid_like(event: ActivityEvent, rng: random.Random) -> InvalidEvent:
    """A broken version of ``event`` (a kind of breakage seen in real fleets)."""
    obj: dict[str, Any] = {
        "v": 1,
        "event_id": event.event_id + "x",
        "kind": event.kind,
        "ts": event.ts,
        "district_id": event.district_id,
        "student_id": event.student_id,
        "device_id": event.device_id,
        "app": event.app or "docs",
    }
    breakage = rng.randrange(6)
    if breakage == 0:
        obj["v"] = 2
        reason = "unsupported_version"
    elif breakage == 1:
        obj["kind"] = "scroll"
        reason = "unknown_kind"
    elif breakage == 2:
        obj["ts"] = float(event.ts)
        reason = "wrong_type"
    elif breakage == 3:
        del obj["student_id"]
        reason = "missing_field"
    elif breakage == 4:
        obj["app"], obj["url"] = "web", "notaurl"
        reason = "bad_url"
    else:
        obj["ts"] = event.ts + DAY_MS
        reason = "ts_in_future"
    return InvalidEvent(f"{event.district_id}:{event.student_id}", obj, reason)


def generate(config: SimulationConfig, start_ms: int, count: int) -> list[SimItem]:
    """The first ``count`` delivered items (valid events and invalid ones) of a simulation."""
    generator = ActivityGenerator(config, build_population(config), start_ms)
    items: list[SimItem] = []
    for item in generator.items():
        items.append(item)
        if len(items) >= count:
            break
    return items


def generate_relative(
    config: SimulationConfig, population: list[Student], count: int
) -> list[SimItem]:
    """The first ``count`` items of a day that starts at 0 ms; see :func:`shift_items`."""
    return list(islice(ActivityGenerator(config, population, 0).items(), count))


def span_of(items: list[SimItem]) -> int:
    """Event-time span of items of a day that starts at 0 ms: the last valid ``ts`` plus 1 s."""
    return max((i.ts for i in items if type(i) is ActivityEvent), default=0) + 1000


def shift_items(items: list[SimItem], start_ms: int) -> list[SimItem]:
    """Items of a day starting at 0 ms moved to ``start_ms``: equal to generating them with
    ``start_ms`` (the model only ever compares or adds event times, so it is shift-invariant).
    """
    shifted: list[SimItem] = []
    append = shifted.append
    for item in items:
        if type(item) is ActivityEvent:
            e0, e1, ts, *rest = item
            append(_tuple_new(ActivityEvent, (e0, e1, ts + start_ms, *rest)))
        else:
            assert isinstance(item, InvalidEvent)  # noqa: S101 - SimItem is one of the two
            obj = dict(item.obj)
            ts = obj["ts"]
            obj["ts"] = float(int(ts) + start_ms) if type(ts) is float else ts + start_ms
            append(InvalidEvent(item.key, obj, item.reason))
    return shifted


def valid_events(items: list[SimItem]) -> list[ActivityEvent]:
    """The valid events of ``items``, in delivery order: the input of the ground truth."""
    return [i for i in items if isinstance(i, ActivityEvent)]
