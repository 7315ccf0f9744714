#!/usr/bin/python3
"""A fleet of JT/T 808-2013 vehicle terminals, written from the standard (JT/T 808-2013, sections 4 and 8) with the
Python standard library only, as a client independent of Taihu's own code and of taihu-bench's timing.

Each terminal opens a TCP connection, registers (0x0100; the platform answers 0x8100 with an authentication code),
authenticates (0x0102, answered with the general reply 0x8001), then sends a location report (0x0200: the basic
fields plus the extra items mileage 0x01 and fuel 0x02) every --interval seconds and a heartbeat (0x0002) every
--heartbeat seconds, the sends of all terminals spread evenly over the interval. The terminals register themselves:
the fleet makes a tenant and a device profile whose provision key is the terminals' manufacturer ID.

Measured: the time from writing a report to reading its 0x8001 (the platform answers after the points are
committed), reports lost (not answered with result 0 within --drain seconds after sending stops), and with --verify
the points read back through the REST API.

    /usr/bin/python3 bench/thirdparty/jt808_fleet.py --port 6808 --api http://127.0.0.1:8080 \\
        --admin-password PW --terminals 1000 --interval 10 --heartbeat 30 --duration 60
"""

import asyncio
import random
import struct
import time
from datetime import datetime, timedelta, timezone

import fleetlib

REGISTER, REGISTER_REPLY, AUTHENTICATE = 0x0100, 0x8100, 0x0102
HEARTBEAT, LOCATION, PLATFORM_REPLY = 0x0002, 0x0200, 0x8001
CHINA = timezone(timedelta(hours=8))  # times in a location report are BCD in GMT+8


def escape(data):
    """0x7e -> 0x7d 0x02 and 0x7d -> 0x7d 0x01 (section 4.4.1)."""
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data):
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def check_code(data):
    code = 0
    for b in data:
        code ^= b
    return code


def bcd(digits):
    return bytes(int(digits[i:i + 2], 16) for i in range(0, len(digits), 2))


def frame(message_id, phone_bcd, serial, body):
    """Header (2013: ID, properties with the body length, 6-byte BCD phone, serial), body, check code, escaped."""
    header = struct.pack(">HH", message_id, len(body) & 0x3FF) + phone_bcd + struct.pack(">H", serial)
    content = header + body
    return b"\x7e" + escape(content + bytes([check_code(content)])) + b"\x7e"


def parse(content):
    """(message ID, body) of an unescaped frame whose check code matches, else None."""
    if len(content) < 13 or check_code(content[:-1]) != content[-1]:
        return None
    message_id, properties = struct.unpack_from(">HH", content)
    header = 17 if properties & 0x4000 else 12  # bit 14: the 2019 header (version byte, 10-byte phone)
    if properties & 0x2000:
        header += 4  # sub-package count and number
    return message_id, content[header:header + (properties & 0x3FF)]


def location_body(seq, when):
    """0x0200: alarm, status, latitude, longitude (millionths of a degree), altitude, speed (0.1 km/h), direction,
    time (BCD YYMMDDhhmmss, GMT+8), then extra items: 0x01 mileage (DWORD, 0.1 km) and 0x02 fuel (WORD, 0.1 L)."""
    latitude = 31_490_000 + random.randint(0, 20_000)  # Wuxi
    longitude = 120_310_000 + random.randint(0, 20_000)
    status = 0x00000003  # ACC on, position fixed
    body = struct.pack(">IIIIHHH", 0, status, latitude, longitude, 5, random.randint(0, 800), random.randint(0, 359))
    body += bcd(when.astimezone(CHINA).strftime("%y%m%d%H%M%S"))
    body += struct.pack(">BBI", 0x01, 4, 100_000 + seq) + struct.pack(">BBH", 0x02, 2, 500 + seq % 100)
    return body


class Terminal:
    def __init__(self, fleet, index):
        self.fleet = fleet
        self.phone = fleet.phone_prefix + f"{index:06d}"
        self.phone_bcd = bcd(self.phone)
        self.serial = 0
        self.waiting = {}  # serial -> (message ID, time written)
        self.answers = {}  # serial -> future, during registration and authentication
        self.reader = self.writer = None
        self.reports_answered = 0

    def next_serial(self):
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial

    async def send(self, message_id, body):
        serial = self.next_serial()
        self.writer.write(frame(message_id, self.phone_bcd, serial, body))
        await self.writer.drain()
        return serial

    async def request(self, message_id, body):
        """Sends and waits for the reply to this serial (0x8100 or 0x8001)."""
        future = asyncio.get_running_loop().create_future()
        serial = self.next_serial()
        self.answers[serial] = future
        self.writer.write(frame(message_id, self.phone_bcd, serial, body))
        await self.writer.drain()
        return await asyncio.wait_for(future, 30)

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.fleet.args.host, self.fleet.args.port)
        self.fleet.reading.append(asyncio.create_task(self.read()))
        # 0x0100: province, city, manufacturer ID (5), model (20), terminal ID (7), plate colour, plate (GBK).
        registration = struct.pack(">HH", 32, 200) + self.fleet.key.encode().ljust(5, b"\0")[:5] \
            + b"PYFLEET".ljust(20, b"\0") + self.phone[-7:].encode() + bytes([1]) + ("\u82cfB" + self.phone[-5:]).encode("gbk")
        result, code = await self.request(REGISTER, registration)
        if result != 0:
            raise RuntimeError(f"terminal {self.phone}: registration result {result}")
        result, _ = await self.request(AUTHENTICATE, code)
        if result != 0:
            raise RuntimeError(f"terminal {self.phone}: authentication result {result}")

    async def read(self):
        buffer = b""
        try:
            while True:
                data = await self.reader.read(4096)
                if not data:
                    return
                buffer += data
                while True:
                    start = buffer.find(b"\x7e")
                    end = buffer.find(b"\x7e", start + 1) if start >= 0 else -1
                    if end < 0:
                        buffer = buffer[start:] if start >= 0 else b""
                        break
                    content, buffer = buffer[start + 1:end], buffer[end:]
                    if content:
                        buffer = buffer[1:]
                        self.received(unescape(content))
        except (ConnectionError, asyncio.CancelledError):
            return

    def received(self, content):
        parsed = parse(content)
        if parsed is None:
            self.fleet.bad_frames += 1
            return
        message_id, body = parsed
        if message_id == REGISTER_REPLY:
            serial, result = struct.unpack_from(">HB", body)
            if serial in self.answers:
                self.answers.pop(serial).set_result((result, body[3:]))
        elif message_id == PLATFORM_REPLY:
            serial, _, result = struct.unpack_from(">HHB", body)
            if serial in self.answers:
                self.answers.pop(serial).set_result((result, b""))
            elif serial in self.waiting:
                self.fleet.answered(self, *self.waiting.pop(serial), result)

    async def run(self, offset, stop):
        args = self.fleet.args
        loop = asyncio.get_running_loop()
        next_report = loop.time() + offset
        next_heartbeat = loop.time() + offset * args.heartbeat / args.interval
        reports = 0
        while True:
            at = min(next_report, next_heartbeat)
            if at >= stop:
                return
            await asyncio.sleep(max(0, at - loop.time()))
            if next_report <= next_heartbeat:
                reports += 1
                # One second later per report: a terminal's points never share a timestamp.
                when = self.fleet.first_time + timedelta(seconds=reports)
                serial = await self.send(LOCATION, location_body(reports, when))
                self.waiting[serial] = (LOCATION, time.perf_counter())
                self.fleet.reports_sent += 1
                next_report += args.interval
            else:
                serial = await self.send(HEARTBEAT, b"")
                self.waiting[serial] = (HEARTBEAT, time.perf_counter())
                self.fleet.heartbeats_sent += 1
                next_heartbeat += args.heartbeat


class Fleet:
    def __init__(self, args):
        self.args = args
        self.key = ""
        self.phone_prefix = "9" + f"{random.randint(0, 99999):05d}"  # 12 digits with the terminal's six
        self.first_time = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
        self.reading = []
        self.latencies = []
        self.reports_sent = self.reports_answered = self.heartbeats_sent = self.heartbeats_answered = 0
        self.not_ok = self.bad_frames = 0

    def answered(self, terminal, message_id, written, result):
        if result != 0:
            self.not_ok += 1
        elif message_id == LOCATION:
            self.reports_answered += 1
            terminal.reports_answered += 1
            self.latencies.append((time.perf_counter() - written) * 1000)
        else:
            self.heartbeats_answered += 1

    async def run(self):
        args = self.args
        api = fleetlib.Api(args.api)
        run = api.own_tenant(args.admin_user, args.admin_password, "jt808py")
        self.key = run[:5].upper()
        api.provisioning_profile("python jt808 fleet " + run, self.key)
        terminals = [Terminal(self, i) for i in range(args.terminals)]
        started = time.perf_counter()
        gate = asyncio.Semaphore(32)

        async def connect(terminal):
            async with gate:
                await terminal.connect()

        await asyncio.gather(*(connect(t) for t in terminals))
        registered = time.perf_counter() - started
        loop = asyncio.get_running_loop()
        begin = loop.time() + 0.5
        stop = begin + args.duration
        spread = args.interval / len(terminals)
        await asyncio.gather(*(t.run(begin - loop.time() + i * spread, stop) for i, t in enumerate(terminals)))
        deadline = loop.time() + args.drain
        while loop.time() < deadline and any(t.waiting for t in terminals):
            await asyncio.sleep(0.05)
        verified = stored = lost_after_answer = None
        if args.verify:
            # Every answered report must be stored (one latitude point per report, each at its own second).
            verified, stored, lost_after_answer = 0, 0, 0
            start_ms = int(self.first_time.timestamp() * 1000)
            for t in terminals[:args.verify]:
                count = api.stored_count(f"\u82cfB{t.phone[-5:]} ({t.phone})", "latitude", start_ms, start_ms + 10 ** 9)
                verified += 1
                stored += count
                lost_after_answer += max(0, t.reports_answered - count)
        for t in terminals:
            t.writer.close()
        for task in self.reading:
            task.cancel()
        return {
            "client": "jt808_fleet.py (Python asyncio, JT/T 808-2013)",
            "terminals": args.terminals, "interval_s": args.interval, "heartbeat_s": args.heartbeat,
            "duration_s": args.duration, "registration_s": round(registered, 2),
            "reports_sent": self.reports_sent, "reports_answered": self.reports_answered,
            "lost": self.reports_sent - self.reports_answered, "answers_not_ok": self.not_ok,
            "heartbeats_sent": self.heartbeats_sent, "heartbeats_answered": self.heartbeats_answered,
            "bad_frames": self.bad_frames, "report_to_8001_ms": fleetlib.latency_summary(self.latencies),
            "verified_terminals": verified, "reports_stored": stored, "answered_not_stored": lost_after_answer,
            "json": args.json,
        }


def main():
    parser = fleetlib.common_arguments("A fleet of JT/T 808-2013 terminals (Python standard library only).", 6808)
    parser.add_argument("--terminals", type=int, default=100)
    parser.add_argument("--heartbeat", type=float, default=30, help="seconds between one terminal's heartbeats")
    parser.add_argument("--drain", type=float, default=10, help="seconds to wait for answers after sending stops")
    args = parser.parse_args()
    result = asyncio.run(Fleet(args).run())
    fleetlib.report(result)
    ok = result["lost"] == 0 and result["answers_not_ok"] == 0 and result["bad_frames"] == 0 and not result["answered_not_stored"]
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
