#!/usr/bin/python3
"""HJ 212-2017 monitoring stations, written from the standard (HJ 212-2017, sections 6.3 to 6.6 and appendix A's
CRC) with the Python standard library only, as a client independent of Taihu's own code and of taihu-bench's timing.

Each station keeps one TCP connection and sends minute data (CN=2051, ST=22 air quality, eight pollutants with
Min, Avg, Max and Flag) every --interval seconds, the stations spread evenly over the interval, with Flag=5
(edition 2017, answer wanted). It waits for the data answer (CN=9014, the same QN), which the platform sends after
the points are committed, before its next upload. The stations provision themselves: their PW is the provision key
of a device profile the fleet makes in a tenant of its own.

Measured: the time from writing an upload to reading its 9014, uploads never answered within --answer-timeout, and
with --verify the uploads read back through the REST API.

    /usr/bin/python3 bench/thirdparty/hj212_fleet.py --port 9212 --api http://127.0.0.1:8080 \\
        --admin-password PW --stations 500 --interval 60 --duration 120
"""

import asyncio
import random
import time
from datetime import datetime, timedelta, timezone

import fleetlib

CHINA = timezone(timedelta(hours=8))  # DataTime and QN are the station's local time (China Standard Time)
POLLUTANTS = ["a34004", "a34002", "a21026", "a21004", "a21005", "a05024", "a01001", "a01002"]


def crc16(data):
    """Appendix A: CRC16 from 0xFFFF, each byte XORed into the register's high byte shifted down, polynomial 0xA001."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ b
        for _ in range(8):
            carry = crc & 1
            crc >>= 1
            if carry:
                crc ^= 0xA001
    return crc


def packet(segment):
    """## + the data segment's length (4 digits) + the segment + its CRC (4 hex digits) + CR LF (section 6.3.2)."""
    data = segment.encode("ascii")
    return b"##%04d" % len(data) + data + b"%04X\r\n" % crc16(data)


def fields(segment):
    """The data segment's fields before CP (QN, ST, CN, PW, MN, Flag)."""
    head = segment.split("CP=&&", 1)[0]
    return dict(part.split("=", 1) for part in head.split(";") if "=" in part)


def minute_data(qn, mn, pw, data_time):
    values = ";".join(
        f"{p}-Min={random.uniform(5, 40):.1f},{p}-Avg={random.uniform(40, 60):.2f},{p}-Max={random.uniform(60, 90):.1f},{p}-Flag=N"
        for p in POLLUTANTS)
    return f"QN={qn};ST=22;CN=2051;PW={pw};MN={mn};Flag=5;CP=&&DataTime={data_time:%Y%m%d%H%M%S};{values}&&"


class Station:
    def __init__(self, fleet, index):
        self.fleet = fleet
        self.mn = f"PY{fleet.run}{index:05d}"
        self.uploads = 0
        self.answered = 0
        self.reader = self.writer = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.fleet.args.host, self.fleet.args.port)

    async def answer(self, qn):
        """Reads packets until the 9014 with this QN; False when one fails its CRC or another QN comes."""
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if not line.startswith(b"##") or len(line) < 12:
                self.fleet.bad_packets += 1
                return False
            length = int(line[2:6])
            data, crc = line[6:6 + length], line[6 + length:-2]
            if len(data) != length or int(crc, 16) != crc16(data):
                self.fleet.bad_packets += 1
                return False
            head = fields(data.decode("ascii"))
            if head.get("CN") == "9014":
                return head.get("QN") == qn

    async def upload(self, data_time):
        """One minute-data upload and its answer; True when answered."""
        fleet = self.fleet
        qn = datetime.now(CHINA).strftime("%Y%m%d%H%M%S%f")[:17]
        written = time.perf_counter()
        self.writer.write(packet(minute_data(qn, self.mn, fleet.key, data_time)))
        await self.writer.drain()
        fleet.sent += 1
        try:
            ok = await asyncio.wait_for(self.answer(qn), fleet.args.answer_timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            ok = False
        if ok:
            # A station's first upload also identifies it (its device created, its PW hashed): kept apart.
            (fleet.latencies if self.uploads else fleet.first_latencies).append((time.perf_counter() - written) * 1000)
            self.answered += 1
        return ok

    async def run(self, offset, stop):
        loop = asyncio.get_running_loop()
        at = loop.time() + offset
        while at < stop:
            await asyncio.sleep(max(0, at - loop.time()))
            if self.writer is None:
                await self.connect()
            # Each upload its own minute, counted from a day back, so that every upload is its own point.
            if not await self.upload(self.fleet.first_time + timedelta(minutes=self.uploads)):
                self.fleet.unanswered += 1
                self.writer.close()
                self.writer = None  # a station that saw no answer connects again for its next upload
            self.uploads += 1
            at += self.fleet.args.interval


class Fleet:
    def __init__(self, args):
        self.args = args
        self.run_id = self.key = self.run = ""
        first = datetime.now(CHINA) - timedelta(days=1)
        self.first_time = first.replace(second=0, microsecond=0)
        self.latencies = []
        self.first_latencies = []
        self.sent = self.unanswered = self.bad_packets = 0

    async def start(self):
        args = self.args
        api = fleetlib.Api(args.api)
        self.run = api.own_tenant(args.admin_user, args.admin_password, "hj212py")
        self.key = "P" + self.run  # 9 characters: a PW has at most 9
        api.provisioning_profile("python hj212 fleet " + self.run, self.key)
        stations = [Station(self, i) for i in range(args.stations)]
        loop = asyncio.get_running_loop()
        begin = loop.time() + 0.5
        spread = args.interval / len(stations)
        await asyncio.gather(*(s.run(begin - loop.time() + i * spread, begin + args.duration) for i, s in enumerate(stations)))
        verified = stored = lost_after_answer = None
        if args.verify:
            verified, stored, lost_after_answer = 0, 0, 0
            start_ms = int(self.first_time.timestamp() * 1000)
            for s in stations[:args.verify]:
                count = api.stored_count(s.mn, "a34004-Avg", start_ms, start_ms + (s.uploads + 1) * 60_000)
                verified += 1
                stored += count
                lost_after_answer += max(0, s.answered - count)
        for s in stations:
            if s.writer is not None:
                s.writer.close()
        return {
            "client": "hj212_fleet.py (Python asyncio, HJ 212-2017)",
            "stations": args.stations, "interval_s": args.interval, "duration_s": args.duration,
            "uploads_sent": self.sent, "uploads_answered": len(self.latencies) + len(self.first_latencies), "unanswered": self.unanswered,
            "bad_packets": self.bad_packets, "upload_to_9014_ms": fleetlib.latency_summary(self.latencies),
            "first_upload_to_9014_ms": fleetlib.latency_summary(self.first_latencies),
            "verified_stations": verified, "uploads_stored": stored, "answered_not_stored": lost_after_answer,
            "json": args.json,
        }


def main():
    parser = fleetlib.common_arguments("HJ 212-2017 stations sending minute data (Python standard library only).", 9212)
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--answer-timeout", type=float, default=10, help="seconds to wait for a 9014")
    args = parser.parse_args()
    result = asyncio.run(Fleet(args).start())
    fleetlib.report(result)
    ok = result["unanswered"] == 0 and result["bad_packets"] == 0 and not result["answered_not_stored"]
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
