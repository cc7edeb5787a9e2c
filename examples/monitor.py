#!/usr/bin/python3
"""monitor.py -- a ringkeep follower written from docs/PROTOCOL.md and
docs/FORMAT.md alone: it rebuilds a primary's state in memory and checks
its state digest against the primary's heartbeats.

  1. waits for a heartbeat (rk.h) and takes the primary's epoch from it
     (a request of a higher epoch would make the primary step down);
  2. FETCHes entry 1; when the primary no longer holds it (trim_journal =
     yes: ERROR code 2), says HELLO as a monitor (last_seq 0, monitor
     true) from a routing id of its own, closed at once, to learn the
     newest checkpoint from WELCOME,
     downloads it with SNAPSHOT, verifies and loads it (FORMAT.md,
     "Checkpoint files") and goes on from its replay record's restart_seq;
  3. everything else goes out on a DEALER that never says HELLO (FETCH
     and SNAPSHOT are served without one), so the primary does not list
     the monitor as a standby or keep its journal for it;
  4. FETCHes the entries it lacks and applies them with the group rules
     (FORMAT.md, "Rebuilding the state"), then follows rk.j, fetching any
     gap; an entry whose prev_xxh is not its last entry's XXH64 (the
     primary lost that one in a power cut: PROTOCOL.md, rk.j) makes it
     start again;
  5. compares its digest with every heartbeat's (digest_seq, digest) and
     checkpoint notice's (journal_seq, digest) once it has applied that far.

It never sends ACK: it holds nothing durably, and an ACK would count it
as a standby holding what it acknowledges.  It prints one line per event;
exit status 0 (--until-seq reached with a matching digest, or stopped by
SIGTERM or SIGINT), 1 (a digest differs, or bad input from the primary),
2 (usage, or no answer).

Also: monitor.py --checkpoint FILE verifies a checkpoint file and prints
its header and digest (--dump writes its entries).

Needs Debian's python3-zmq, python3-msgpack, python3-zstandard and
python3-xxhash; run it with /usr/bin/python3.
"""

import argparse
import os
import signal
import struct
import sys
import time

import msgpack
import xxhash
import zmq
import zstandard

VERSION = 2
WIRE_MSG_MAX = 75_563_080
CHUNK_MAX = 1 << 20
MASK64 = (1 << 64) - 1

JOURNAL_MAGIC = 0x454A4B52
JOURNAL_HEADER = struct.Struct("<IHHQQQQQIIII")  # 64 bytes
JOURNAL_ZSTD = 1
JOURNAL_MAX_RAW = 64 << 20

FRAME_HEADER = struct.Struct("<IBBHQQHHI")  # 32 bytes
PUT, DEL, MARK, PAD, ATTACH, ABORT, TABLE = 1, 2, 3, 4, 5, 6, 7
FRAME_NAMES = {PUT: "PUT", DEL: "DEL", MARK: "MARK", ATTACH: "ATTACH", ABORT: "ABORT", TABLE: "TABLE"}

CKPT_PREFIX = struct.Struct("<4sHHIIQ")  # 24 bytes, then the 8-byte header hash
CKPT_MAX_HEADER = 16 << 20
CKPT_FRAME_MAX = (1 << 20) + (64 << 20)

ERR_EPOCH, ERR_TRIMMED, ERR_NO_FILE = 1, 2, 3


class BadInput(Exception):
    """Something the primary sent breaks a rule of the documents."""


class StartOver(Exception):
    """The checkpoint being downloaded was removed: start again."""


def say(*words):
    print(*words, flush=True)


def give_up(why):
    say(f"monitor: {why}")
    sys.exit(2)


# ------------------------------------------------------------ the state


def entry_digest(table, key, value):
    """One entry's term of the state digest (FORMAT.md, "The state digest")."""
    seed = xxhash.xxh3_64_intdigest(table.encode() + b"\0" + key)
    return xxhash.xxh3_64_intdigest(value, seed=seed)


class Producer:
    def __init__(self):
        self.applied_lsn = 0  # LSN of its last MARK applied
        self.height = 0
        self.discard_lsn = 0  # LSN of its last ATTACH or ABORT
        self.open = []  # its PUT/DEL frames since then, held until its MARK


class State:
    """Tables, digest, producers and id maps, rebuilt by the group rules."""

    def __init__(self):
        self.tables = {}  # name -> {key: value}
        self.digest = 0
        self.producers = {}  # name -> Producer
        self.table_ids = {}  # ring table id -> table name (TABLE frames)
        self.slots = {}  # ring producer slot -> producer name (ATTACH frames)
        self.next_seq = 1  # next journal entry to apply
        # the checkpoint loaded (0: none): entries from its restart_seq up to
        # it are read again, and the state is the checkpoint's until then
        self.base_seq = 0
        self.n_groups = self.n_discarded = 0

    def producer(self, name):
        return self.producers.setdefault(name, Producer())

    def put(self, table, key, value):
        t = self.tables.setdefault(table, {})
        old = t.get(key)
        if old is not None:
            self.digest = (self.digest - entry_digest(table, key, old)) & MASK64
        t[key] = value
        self.digest = (self.digest + entry_digest(table, key, value)) & MASK64

    def delete(self, table, key):
        t = self.tables.get(table, {})
        old = t.pop(key, None)
        if old is not None:
            self.digest = (self.digest - entry_digest(table, key, old)) & MASK64

    def discard(self, p, lsn):
        if p.open and lsn > p.discard_lsn:
            self.n_discarded += 1
        if lsn > p.discard_lsn:
            p.discard_lsn = lsn
        p.open = []

    def apply_frame(self, f):
        ftype, table_id, slot, lsn, key, value = f
        if ftype == TABLE:
            self.table_ids[table_id] = key.decode()
            return
        if ftype == ATTACH:
            name = key.decode()
            self.discard(self.producer(name), lsn)
            self.slots[slot] = name
            return
        if slot not in self.slots:
            raise BadInput(f"frame at LSN {lsn} names producer slot {slot}, which no ATTACH named")
        p = self.producer(self.slots[slot])
        if ftype == ABORT:
            if lsn >= p.discard_lsn:  # an older session's ABORT read again is ignored
                self.discard(p, lsn)
            return
        if lsn <= p.applied_lsn:
            return  # applied before (a checkpoint's replay point)
        if ftype == MARK:
            for rtype, rtable, rkey, rvalue in p.open:
                if rtable not in self.table_ids:
                    raise BadInput(f"a record of table id {rtable}, which no TABLE frame named")
                name = self.table_ids[rtable]
                if rtype == PUT:
                    self.put(name, rkey, rvalue)
                else:
                    self.delete(name, rkey)
            p.open = []
            p.applied_lsn = lsn
            p.height = struct.unpack("<Q", value)[0]
            self.n_groups += 1
            return
        if table_id not in self.table_ids:
            raise BadInput(f"frame at LSN {lsn} names table id {table_id}, which no TABLE frame named")
        p.open.append((ftype, table_id, key, value))

    def n_entries(self):
        return sum(len(t) for t in self.tables.values())

    def dump(self, path):
        """Every entry, one line each: table, key and value in hex, in
        checkpoint order (tables by name, keys bytewise)."""
        with open(path, "w") as out:
            for name in sorted(self.tables, key=lambda n: n.encode()):
                t = self.tables[name]
                for key in sorted(t):
                    out.write(f"{name}\t{key.hex()}\t{t[key].hex()}\n")


# ------------------------------------------------------------ journal entries


def decode_frames(raw, n_frames, first_lsn, last_lsn, next_lsn, seq):
    frames = []
    pos = 0
    prev_lsn = None
    while pos < len(raw):
        if len(raw) - pos < FRAME_HEADER.size:
            raise BadInput(f"entry {seq}: {len(raw) - pos} bytes left, less than a frame header")
        length, ftype, flags, table, checksum, lsn, producer, reserved, klen = FRAME_HEADER.unpack_from(raw, pos)
        if length < FRAME_HEADER.size or length > len(raw) - pos:
            raise BadInput(f"entry {seq}: frame at offset {pos} has length {length}")
        if flags or reserved or ftype not in FRAME_NAMES or klen > length - FRAME_HEADER.size:
            raise BadInput(f"entry {seq}: frame at offset {pos}: type {ftype}, flags {flags}, klen {klen}")
        seed = length | ftype << 32 | flags << 40 | table << 48
        if xxhash.xxh3_64_intdigest(raw[pos + 16 : pos + length], seed=seed) != checksum:
            raise BadInput(f"entry {seq}: frame at offset {pos}: checksum mismatch")
        if ftype == MARK and (length != 40 or klen != 0):
            raise BadInput(f"entry {seq}: MARK frame of length {length}")
        if prev_lsn is None and lsn != first_lsn:
            raise BadInput(f"entry {seq}: first frame's LSN {lsn} is not first_lsn {first_lsn}")
        if prev_lsn is not None and lsn <= prev_lsn:
            raise BadInput(f"entry {seq}: LSN {lsn} not above {prev_lsn}")
        end = pos + ((length + 7) & ~7)
        if end > len(raw) or any(raw[pos + length : end]):
            raise BadInput(f"entry {seq}: frame at offset {pos}: bad alignment bytes")
        key = raw[pos + 32 : pos + 32 + klen]
        value = raw[pos + 32 + klen : pos + length]
        frames.append((ftype, table, producer, lsn, key, value))
        prev_lsn = lsn
        pos = end
    if len(frames) != n_frames or prev_lsn != last_lsn or next_lsn <= last_lsn:
        raise BadInput(f"entry {seq}: {len(frames)} frames ending at LSN {prev_lsn}, header says "
                       f"{n_frames} ending at {last_lsn} (next_lsn {next_lsn})")
    return frames


def decode_entry(buf, seq, epoch):
    """A journal entry (FORMAT.md, "Journal entries") -> (entry epoch, frames)."""
    if len(buf) < 72:
        raise BadInput(f"entry {seq}: {len(buf)} bytes")
    (magic, version, flags, hseq, hepoch, first_lsn, last_lsn, next_lsn,
     n_frames, raw_len, body_len, reserved) = JOURNAL_HEADER.unpack_from(buf)
    if magic != JOURNAL_MAGIC or version != 1:
        raise BadInput(f"entry {seq}: magic {magic:#x}, version {version}")
    if hseq != seq or hepoch > epoch:
        raise BadInput(f"entry {seq}: its header says seq {hseq} epoch {hepoch} (message epoch {epoch})")
    if body_len != len(buf) - 72 or flags & ~JOURNAL_ZSTD or reserved or raw_len > JOURNAL_MAX_RAW:
        raise BadInput(f"entry {seq}: body_len {body_len} of {len(buf)} bytes, flags {flags}")
    trailer = int.from_bytes(buf[64 + body_len :], "big")
    if xxhash.xxh64_intdigest(buf[: 64 + body_len]) != trailer:
        raise BadInput(f"entry {seq}: XXH64 trailer mismatch")
    body = buf[64 : 64 + body_len]
    if flags & JOURNAL_ZSTD:
        params = zstandard.get_frame_parameters(body)
        if params.content_size != raw_len:
            raise BadInput(f"entry {seq}: zstd frame of {params.content_size} bytes, raw_len {raw_len}")
        raw = zstandard.ZstdDecompressor().decompress(body, max_output_size=raw_len)
    else:
        raw = body
    if len(raw) != raw_len or raw_len % 8:
        raise BadInput(f"entry {seq}: {len(raw)} bytes of frames, raw_len {raw_len}")
    return hepoch, decode_frames(raw, n_frames, first_lsn, last_lsn, next_lsn, seq)


# ------------------------------------------------------------ checkpoint files


def read_checkpoint(data, state=None):
    """Verifies a whole checkpoint file (FORMAT.md, "Checkpoint files") and,
    given a state, loads it.  Returns the header map."""
    if len(data) < 40:
        raise BadInput(f"checkpoint: {len(data)} bytes")
    magic, major, minor, header_len, n_frames, body_len = CKPT_PREFIX.unpack_from(data)
    if magic != b"RKCP" or major != 1:
        raise BadInput(f"checkpoint: magic {magic!r}, format {major}.{minor}")
    if header_len > CKPT_MAX_HEADER or len(data) != 32 + header_len + body_len + 8:
        raise BadInput(f"checkpoint: {len(data)} bytes, header {header_len} + body {body_len}")
    if xxhash.xxh64_intdigest(data[: len(data) - 8]) != int.from_bytes(data[-8:], "big"):
        raise BadInput("checkpoint: trailer XXH64 mismatch")
    header_map = data[32 : 32 + header_len]
    if xxhash.xxh64_intdigest(data[:24] + header_map) != int.from_bytes(data[24:32], "big"):
        raise BadInput("checkpoint: header XXH64 mismatch")
    h = msgpack.unpackb(header_map, raw=False, strict_map_key=True)
    entries = []
    pos = 32 + header_len
    end = pos + body_len
    raw_size = 0
    for i in range(n_frames):
        if end - pos < 8:
            raise BadInput(f"checkpoint: frame {i} prefix past the body")
        raw_len, comp_len = struct.unpack_from("<II", data, pos)
        pos += 8
        if raw_len < 1 or raw_len > CKPT_FRAME_MAX or comp_len > end - pos:
            raise BadInput(f"checkpoint: frame {i}: raw_len {raw_len}, comp_len {comp_len}")
        comp = data[pos : pos + comp_len]
        if zstandard.get_frame_parameters(comp).content_size != raw_len:
            raise BadInput(f"checkpoint: frame {i}: zstd content size is not raw_len {raw_len}")
        raw = zstandard.ZstdDecompressor().decompress(comp, max_output_size=raw_len)
        pos += comp_len
        raw_size += raw_len
        unpacker = msgpack.Unpacker(raw=True, max_buffer_size=len(raw))
        unpacker.feed(raw)
        for item in unpacker:
            if not (isinstance(item, list) and len(item) == 3):
                raise BadInput(f"checkpoint: frame {i}: an entry is not [table, key, value]")
            entries.append((item[0].decode(), bytes(item[1]), bytes(item[2])))
    if pos != end:
        raise BadInput("checkpoint: bytes after the last frame")
    digest = 0
    prev = None
    counts = {}
    for table, key, value in entries:
        if prev is not None and (table.encode(), key) <= (prev[0].encode(), prev[1]):
            raise BadInput(f"checkpoint: entries out of order at table {table}")
        prev = (table, key)
        counts[table] = counts.get(table, 0) + 1
        digest = (digest + entry_digest(table, key, value)) & MASK64
    if (len(entries) != h["n_entries"] or raw_size != h["raw_size"] or digest != h["digest"]
            or counts != {name: n for name, n in h["tables"]}):
        raise BadInput(f"checkpoint: {len(entries)} entries, digest {digest:016x}; its header says "
                       f"{h['n_entries']}, {h['digest']:016x}")
    if state is not None:
        for table, key, value in entries:
            state.tables.setdefault(table, {})[key] = value
        state.digest = digest
    if state is not None and "replay" in h:
        restart_seq, n_groups, _, n_discarded, producers, table_ids, slots = h["replay"][:7]
        for name, applied_lsn, height, _, discard_lsn in (p[:5] for p in producers):
            p = state.producer(name)
            p.applied_lsn, p.height, p.discard_lsn = applied_lsn, height, discard_lsn
        state.table_ids = {i: name for i, name in table_ids}
        state.slots = {i: name for i, name in slots}
        state.next_seq = restart_seq
        state.n_groups, state.n_discarded = n_groups, n_discarded
    return h


# ------------------------------------------------------------ the wire


class Link:
    """The SUB and DEALER sockets, and the requests.

    FETCH and SNAPSHOT go out on a DEALER that never says HELLO: the
    primary serves them without one and does not list it as a standby.
    HELLO, needed only for WELCOME's newest checkpoint, goes out as a
    monitor's (never listed, no standby place, the journal not kept for
    it) on a DEALER of its own, closed at once (PROTOCOL.md, "Who may ask
    what")."""

    def __init__(self, args):
        self.ctx = zmq.Context()
        self.sub = self.socket(zmq.SUB)
        self.dealer = self.socket(zmq.DEALER)
        for topic in (b"rk.h", b"rk.c", b"rk.j"):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.sub.connect(args.publish)
        self.dealer.connect(args.serve)
        self.args = args
        self.epoch = 0  # the primary's, from its heartbeats and replies

    def socket(self, kind):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.MAXMSGSIZE, WIRE_MSG_MAX)
        s.setsockopt(zmq.LINGER, 0)
        return s

    def hello(self):
        """HELLO with last_seq 0 from a DEALER of its own -> WELCOME body."""
        s = self.socket(zmq.DEALER)  # its routing id: ZeroMQ's choice
        s.connect(self.args.serve)
        try:
            while True:
                # the 7th element, monitor = true: not a standby (PROTOCOL.md, "Who may ask what")
                w = self.request("HELLO", self.args.id, 0, 0, None, True, reply="WELCOME", sock=s)
                if w[0] != "ERROR":
                    return w
                if w[1] != ERR_EPOCH:
                    raise BadInput(f"HELLO refused: code {w[1]}: {w[2]}")
        finally:
            s.close()

    def body(self, name, frames, want):
        if len(frames) != 2 or frames[0] not in want:
            raise BadInput(f"a message of {len(frames)} frames named {frames[0][:16]!r}")
        m = msgpack.unpackb(frames[1], raw=False, max_bin_len=WIRE_MSG_MAX, max_array_len=1 << 16)
        if not isinstance(m, list) or len(m) < 2 or m[0] != VERSION:
            raise BadInput(f"{name}: not a version {VERSION} body")
        if m[1] < self.epoch:
            raise BadInput(f"{name}: epoch {m[1]} below {self.epoch}")
        self.epoch = m[1]
        return m

    def request(self, name, *fields, reply, sock=None):
        """Sends [v, e, fields...] and waits for its reply (a hang guard
        of --timeout).  Returns the reply body, or ('ERROR', code, text).
        An ERROR code 1 (our epoch is lower) is adopted by body()."""
        sock = sock or self.dealer
        sock.send_multipart([name.encode(), msgpack.packb([VERSION, self.epoch, *fields])])
        if not sock.poll(self.args.timeout * 1000):
            give_up(f"no answer to {name} from {self.args.serve} in {self.args.timeout} s")
        frames = sock.recv_multipart()
        m = self.body(frames[0].decode(errors="replace"), frames, (reply.encode(), b"ERROR"))
        if frames[0] == b"ERROR":
            return ("ERROR", m[2], m[3])
        return m


class Monitor:
    def __init__(self, args):
        self.args = args
        self.link = Link(args)
        self.state = State()
        self.digests = {}  # seq -> our digest after it, the last 65536
        self.theirs = []  # (seq, digest, what) from heartbeats and notices, not reached yet
        self.held = {}  # rk.j entries past a gap: seq -> (epoch, entry bytes, prev_xxh or None)
        self.last_xxh = None  # the XXH64 trailer of the last entry applied (None: none)
        self.announced = 0  # journal_seq of the last heartbeat
        self.last_match = 0
        self.n_published = self.n_fetched = 0  # entries applied from rk.j, from FETCH
        self.deadline = time.monotonic() + args.timeout

    # -------------------------------------------------------- bootstrap

    def first_heartbeat(self):
        while True:
            if not self.link.sub.poll(self.args.timeout * 1000):
                give_up(f"no heartbeat from {self.args.publish} in {self.args.timeout} s")
            frames = self.link.sub.recv_multipart()
            if frames[0] == b"rk.h":
                hb = self.link.body("rk.h", frames, (b"rk.h",))
                say(f"primary at epoch {hb[1]}: journal_seq {hb[2]}, applied_seq {hb[3]}")
                return

    def start(self):
        """From the start of the journal, or, when the primary no longer
        holds entry 1, from its newest checkpoint (which HELLO names)."""
        while True:
            try:
                return self.try_start()
            except StartOver as e:
                say(f"starting again: {e}")

    def try_start(self):
        self.state = State()
        self.digests.clear()
        self.held.clear()
        self.last_xxh = None
        while True:
            r = self.link.request("FETCH", 1, 1, reply="ENTRIES")
            if r[0] != "ERROR" or r[1] != ERR_EPOCH:
                break
        if r[0] != "ERROR":
            say("following from entry 1")
            return
        if r[1] != ERR_TRIMMED:
            raise BadInput(f"FETCH refused: code {r[1]}: {r[2]}")
        w = self.link.hello()
        first_seq, last_seq, checkpoint = w[2], w[3], w[4]
        say(f"welcome: the primary holds entries {first_seq}..{last_seq}, "
            f"newest checkpoint {checkpoint[5] if checkpoint else 'none'}")
        if not checkpoint:
            give_up("the primary's journal does not start at 1 and it has no checkpoint")
        self.bootstrap(checkpoint[5])

    def bootstrap(self, name):
        data = bytearray()
        total = xxh = None
        while total is None or len(data) < total:
            c = self.link.request("SNAPSHOT", name, len(data), CHUNK_MAX, reply="CHUNK")
            if c[0] == "ERROR" and c[1] == ERR_NO_FILE:
                raise StartOver(f"checkpoint {name} is gone ({c[2]})")
            if c[0] == "ERROR" and c[1] != ERR_EPOCH:
                raise BadInput(f"SNAPSHOT {name} refused: code {c[1]}: {c[2]}")
            if c[0] == "ERROR":
                continue  # asked at a lower epoch: the primary's is adopted
            _, _, cname, offset, size, file_xxh, chunk = c[:7]
            if cname != name or offset != len(data) or offset + len(chunk) > size:
                raise BadInput(f"CHUNK of {cname} at {offset}+{len(chunk)} of {size}")
            if total is not None and (size, file_xxh) != (total, xxh):
                data, total = bytearray(), None  # the file changed: start over
                continue
            total, xxh = size, file_xxh
            if not chunk and len(data) < total:
                raise BadInput("an empty CHUNK before the end of the file")
            data += chunk
        data = bytes(data)
        if xxhash.xxh64_intdigest(data) != xxh:
            raise BadInput(f"checkpoint {name}: XXH64 of the file is not the CHUNK's")
        h = read_checkpoint(data, self.state)
        if "replay" not in h:
            raise BadInput(f"checkpoint {name} has no replay record (format 1.0): no journal can follow it")
        say(f"bootstrap from checkpoint {name}: {len(data)} bytes, journal_seq {h['journal_seq']}, "
            f"{h['n_entries']} entries, digest {h['digest']:016x}; replay from entry {self.state.next_seq}")
        self.state.base_seq = h["journal_seq"]
        self.digests[h["journal_seq"]] = h["digest"]

    # -------------------------------------------------------- following

    def apply(self, seq, epoch, entry):
        entry_epoch, frames = decode_entry(entry, seq, epoch)
        for f in frames:
            self.state.apply_frame(f)
        self.state.next_seq = seq + 1
        self.last_xxh = int.from_bytes(entry[-8:], "big")
        if seq >= self.state.base_seq:  # before it: not the state at seq
            self.digests[seq] = self.state.digest
        self.digests.pop(seq - 65536, None)

    def follows(self, seq, prev):
        """Whether entry seq, said to follow an entry of XXH64 prev (None:
        not said), follows our last one; if not, we start again."""
        if prev is None or self.last_xxh is None or prev == self.last_xxh:
            return True
        say(f"entry {seq} follows another entry than ours (the primary lost our last one): starting again")
        self.start()
        return False

    def fetch(self, to_seq):
        """Entries next_seq..to_seq (or as many as the primary holds)."""
        while self.state.next_seq <= to_seq:
            r = self.link.request("FETCH", self.state.next_seq, to_seq, reply="ENTRIES")
            if r[0] == "ERROR":
                if r[1] == ERR_TRIMMED:
                    say("the entries wanted are trimmed: starting again from the newest checkpoint")
                    self.start()
                    continue
                if r[1] == ERR_EPOCH:
                    continue  # asked at a lower epoch: the primary's is adopted
                raise BadInput(f"FETCH refused: code {r[1]}: {r[2]}")
            entries, more = r[2], r[3]
            if entries and not self.follows(entries[0][0], r[4] if len(r) > 4 else None):
                continue
            for seq, entry in entries:
                if seq != self.state.next_seq:
                    raise BadInput(f"ENTRIES gave seq {seq}, expected {self.state.next_seq}")
                self.apply(seq, r[1], entry)
                self.n_fetched += 1
            if not more:
                break

    def compare(self):
        still = []
        for seq, digest, what in self.theirs:
            if seq not in self.digests:
                if seq >= self.state.next_seq:
                    still.append((seq, digest, what))
                continue
            ours = self.digests[seq]
            if ours != digest:
                say(f"digest MISMATCH at seq {seq}: ours {ours:016x}, the primary's {what} {digest:016x}")
                sys.exit(1)
            if seq > self.last_match:
                say(f"digest match at seq {seq}: {ours:016x} ({what}; "
                    f"{self.state.n_entries()} entries in {len(self.state.tables)} tables)")
                self.last_match = seq
        self.theirs = still[-4096:]

    def on_published(self, frames):
        topic = frames[0]
        if topic == b"rk.h":
            hb = self.link.body("rk.h", frames, (b"rk.h",))
            journal_seq, digest, digest_seq = hb[2], hb[6], hb[7]
            self.theirs.append((digest_seq, digest, "heartbeat"))
            if self.args.verbose:
                say(f"heartbeat: epoch {hb[1]} journal_seq {journal_seq} applied_seq {hb[3]} "
                    f"digest {digest:016x}@{digest_seq} standbys {hb[8]}")
            # the last entry an rk.j reveals no gap before: fetched when a
            # heartbeat announced it and the next heartbeat finds it still
            # missing (a heartbeat may be sent just before its rk.j)
            if self.announced >= self.state.next_seq:
                self.fetch(self.announced)
            self.announced = journal_seq
        elif topic == b"rk.c":
            c = self.link.body("rk.c", frames, (b"rk.c",))
            say(f"checkpoint notice: {c[7]} journal_seq {c[2]} digest {c[6]:016x} size {c[5]}")
            self.theirs.append((c[2], c[6], "checkpoint"))
        elif topic == b"rk.j":
            j = self.link.body("rk.j", frames, (b"rk.j",))
            seq, prev = j[2], j[4] if len(j) > 4 else None
            if seq > self.state.next_seq:
                if len(self.held) < 1024:
                    self.held[seq] = (j[1], j[3], prev)
                self.fetch(seq - 1)  # the gap
            if seq == self.state.next_seq and self.follows(seq, prev):
                self.apply(seq, j[1], j[3])
                self.n_published += 1
            while self.state.next_seq in self.held:
                epoch, entry, prev = self.held.pop(self.state.next_seq)
                if not self.follows(self.state.next_seq, prev):
                    break
                self.apply(self.state.next_seq, epoch, entry)
                self.n_published += 1
            for s in [s for s in self.held if s < self.state.next_seq]:
                del self.held[s]
        else:
            raise BadInput(f"unknown topic {topic[:16]!r}")
        self.compare()

    def finish(self, how):
        if self.args.dump:
            self.state.dump(self.args.dump)
        say(f"{how}: state at seq {self.state.next_seq - 1}, last digest match at seq {self.last_match} "
            f"({self.state.n_groups} groups, {self.state.n_discarded} discarded; entries "
            f"{self.n_published} from rk.j, {self.n_fetched} fetched)")
        return 0

    def run(self):
        self.first_heartbeat()
        self.start()
        while True:
            if stop_requested:
                return self.finish("stopped")
            if self.args.until_seq is not None and self.last_match >= self.args.until_seq:
                return self.finish("done")
            if self.args.until_seq is not None and time.monotonic() > self.deadline:
                give_up(f"seq {self.args.until_seq} not matched in {self.args.timeout} s "
                        f"(last match {self.last_match}, applied to {self.state.next_seq - 1})")
            if self.link.sub.poll(200):
                self.on_published(self.link.sub.recv_multipart())


stop_requested = False


def request_stop(signum, frame):
    global stop_requested
    stop_requested = True


def main():
    ap = argparse.ArgumentParser(description="Follow a ringkeep primary, rebuild its state, check its digest.")
    ap.add_argument("--publish", help="the primary's publish endpoint (PUB), e.g. tcp://127.0.0.1:7701")
    ap.add_argument("--serve", help="the primary's serve endpoint (ROUTER), e.g. tcp://127.0.0.1:7702")
    ap.add_argument("--id", default=f"monitor-{os.getpid()}", help="the name said in HELLO (1..47 bytes)")
    ap.add_argument("--until-seq", type=int, help="exit 0 once the digest matches at this seq or later")
    ap.add_argument("--timeout", type=int, default=60, help="seconds to wait for an answer (default 60)")
    ap.add_argument("--dump", help="at exit, write the state there: one 'table<TAB>key hex<TAB>value hex' line per entry")
    ap.add_argument("--checkpoint", help="only verify this checkpoint file and print its header")
    ap.add_argument("--verbose", action="store_true", help="print every heartbeat")
    args = ap.parse_args()
    try:
        if args.checkpoint:
            with open(args.checkpoint, "rb") as f:
                state = State()
                h = read_checkpoint(f.read(), state)
            say(f"checkpoint {args.checkpoint}: ok, journal_seq {h['journal_seq']}, lsn {h['lsn']}, "
                f"{h['n_entries']} entries in {len(h['tables'])} tables, digest {h['digest']:016x}")
            if args.dump:
                state.dump(args.dump)
            return 0
        if not args.publish or not args.serve:
            ap.error("--publish and --serve are required (or --checkpoint FILE)")
        if not 1 <= len(args.id.encode()) <= 47:
            ap.error("--id: 1 to 47 bytes")
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        return Monitor(args).run()
    except BadInput as e:
        say(f"monitor: bad input: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
