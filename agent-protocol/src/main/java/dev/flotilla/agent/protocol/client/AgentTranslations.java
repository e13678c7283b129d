package dev.flotilla.agent.protocol.client;

import com.google.protobuf.ByteString;
import dev.flotilla.agent.protocol.AgentProtocol;
import dev.flotilla.agent.protocol.v1.CloseStdinRequest;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.ExecProcessRequest;
import dev.flotilla.agent.protocol.v1.GuestDetails;
import dev.flotilla.agent.protocol.v1.HandshakeRequest;
import dev.flotilla.agent.protocol.v1.PingRequest;
import dev.flotilla.agent.protocol.v1.ReadFileRequest;
import dev.flotilla.agent.protocol.v1.ReadFileResponse;
import dev.flotilla.agent.protocol.v1.ReadOutputRequest;
import dev.flotilla.agent.protocol.v1.ReadOutputResponse;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import dev.flotilla.agent.protocol.v1.ShutdownRequest;
import dev.flotilla.agent.protocol.v1.SignalProcessRequest;
import dev.flotilla.agent.protocol.v1.StatsRequest;
import dev.flotilla.agent.protocol.v1.StatsResponse;
import dev.flotilla.agent.protocol.v1.WaitProcessRequest;
import dev.flotilla.agent.protocol.v1.WaitProcessResponse;
import dev.flotilla.agent.protocol.v1.WriteFileRequest;
import dev.flotilla.agent.protocol.v1.WriteStdinRequest;
import dev.flotilla.agent.protocol.v1.CancelWatchRequest;
import dev.flotilla.agent.protocol.v1.FileInfo;
import dev.flotilla.agent.protocol.v1.ListDirRequest;
import dev.flotilla.agent.protocol.v1.ListDirResponse;
import dev.flotilla.agent.protocol.v1.MakeDirRequest;
import dev.flotilla.agent.protocol.v1.RemoveRequest;
import dev.flotilla.agent.protocol.v1.RenameRequest;
import dev.flotilla.agent.protocol.v1.StatRequest;
import dev.flotilla.agent.protocol.v1.WatchDirRequest;
import dev.flotilla.agent.protocol.v1.WatchEvent;
import dev.flotilla.agent.protocol.v1.WatchEvents;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/** The one place where domain types and agent.proto messages meet, in both directions. */
final class AgentTranslations {
  private AgentTranslations() {}

  static Request handshake(String sandboxId, long incarnation, Duration lease, byte[] secret) {
    return handshake(sandboxId, incarnation, lease, false, secret);
  }

  static Request handshake(String sandboxId, long incarnation, Duration lease, boolean pausing, byte[] secret) {
    return Request.newBuilder().setHandshake(handshakeBuilder(sandboxId, incarnation, lease, pausing, secret)).build();
  }

  /**
   * The first handshake of a clone: the credentials are the template's ({@code from}), and the
   * rebirth names the identity the agent is to take ({@code sandboxId}, {@code incarnation},
   * {@code secret}) with the host's clock and fresh seed.
   */
  static Request rebirthHandshake(String sandboxId, long incarnation, Duration lease, boolean pausing, byte[] secret,
      AgentAddress.Rebirth from, long wallClockUnixMs, byte[] seed) {
    return Request.newBuilder()
        .setHandshake(handshakeBuilder(from.fromSandboxId(), from.fromIncarnation(), lease, pausing, from.fromSecret())
            .setRebirth(dev.flotilla.agent.protocol.v1.Rebirth.newBuilder()
                .setSandboxId(sandboxId)
                .setIncarnation(incarnation)
                .setSecret(ByteString.copyFrom(secret))
                .setHostname(from.hostname())
                .setWallClockUnixMs(wallClockUnixMs)
                .setSeed(ByteString.copyFrom(seed))))
        .build();
  }

  private static HandshakeRequest.Builder handshakeBuilder(String sandboxId, long incarnation, Duration lease,
      boolean pausing, byte[] secret) {
    if (lease.isNegative() || lease.toMillis() > 0xFFFF_FFFFL) {
      throw new IllegalArgumentException("lease " + lease + " is out of range (0 to 2^32-1 ms; 0: none)");
    }
    return HandshakeRequest.newBuilder()
        .setSandboxId(sandboxId)
        .setIncarnation(incarnation)
        .setProtocolVersion(AgentProtocol.VERSION)
        .setLeaseMs((int) lease.toMillis())
        .setPausing(pausing)
        .setSecret(ByteString.copyFrom(secret));
  }

  static Request exec(ExecRequest r, int initialWindow) {
    ExecProcessRequest.Builder b = ExecProcessRequest.newBuilder()
        .setExecId(r.execId())
        .addAllArgv(r.argv())
        .putAllEnv(r.env())
        .setWorkingDir(r.workingDir())
        .setStdin(r.stdin())
        .setUser(r.user())
        .setInitialWindow(initialWindow);
    if (r.tty() != null) b.setTty(true).setTtyRows(r.tty().rows()).setTtyCols(r.tty().cols()).setTerm(r.tty().term());
    return Request.newBuilder().setExecProcess(b).build();
  }

  static Request resizeTty(String execId, int rows, int cols) {
    return Request.newBuilder()
        .setResizeTty(dev.flotilla.agent.protocol.v1.ResizeTtyRequest.newBuilder().setExecId(execId).setRows(rows).setCols(cols))
        .build();
  }

  static Request execDetached(ExecRequest r, int ringBytes) {
    Request base = exec(r, 0);
    return Request.newBuilder()
        .setExecProcess(base.getExecProcess().toBuilder().setOutputRingBytes(ringBytes))
        .build();
  }

  static Request readOutput(String execId, long offset, int maxBytes, Duration wait) {
    return Request.newBuilder()
        .setReadOutput(ReadOutputRequest.newBuilder()
            .setExecId(execId)
            .setOffset(offset)
            .setMaxBytes(maxBytes)
            .setWaitMillis((int) Math.min(wait.toMillis(), Integer.MAX_VALUE)))
        .build();
  }

  static OutputRead outputRead(Response r, String what, long askedOffset) {
    ReadOutputResponse o = expect(r, Response.KindCase.READ_OUTPUT, what).getReadOutput();
    // The ring only ever skips forward (dropped output): an earlier offset (or one past 2^63, which
    // the host's signed offsets cannot hold) would replay output the host already has as new.
    if (o.getOffset() < askedOffset) {
      throw new AgentException(AgentException.Code.INTERNAL,
          what + ": agent answered offset " + Long.toUnsignedString(o.getOffset()) + ", before the one asked for");
    }
    java.util.List<OutputRead.Chunk> chunks = new java.util.ArrayList<>(o.getChunksCount());
    for (var c : o.getChunksList()) chunks.add(new OutputRead.Chunk(c.getStderr(), c.getData().toByteArray()));
    return new OutputRead(o.getOffset(), chunks, o.getEof());
  }

  static Request waitProcess(String execId) {
    return Request.newBuilder().setWaitProcess(WaitProcessRequest.newBuilder().setExecId(execId)).build();
  }

  static Request signal(String execId, int signal) {
    return Request.newBuilder()
        .setSignalProcess(SignalProcessRequest.newBuilder().setExecId(execId).setSignal(signal))
        .build();
  }

  static Request writeStdin(String execId, byte[] data) {
    return Request.newBuilder()
        .setWriteStdin(WriteStdinRequest.newBuilder().setExecId(execId).setData(ByteString.copyFrom(data)))
        .build();
  }

  static Request closeStdin(String execId) {
    return Request.newBuilder().setCloseStdin(CloseStdinRequest.newBuilder().setExecId(execId)).build();
  }

  static Request writeFile(String path, long offset, byte[] data, int len, boolean first, int mode) {
    return Request.newBuilder()
        .setWriteFile(WriteFileRequest.newBuilder()
            .setPath(path)
            .setOffset(offset)
            .setData(ByteString.copyFrom(data, 0, len))
            .setTruncate(first)
            .setMode(mode)
            .setCreateParents(first))
        .build();
  }

  static Request readFile(String path, long offset, int maxLength) {
    return Request.newBuilder()
        .setReadFile(ReadFileRequest.newBuilder().setPath(path).setOffset(offset).setLength(maxLength))
        .build();
  }

  static Request listDir(String path, int depth, int maxEntries, String startAfter) {
    return Request.newBuilder()
        .setListDir(ListDirRequest.newBuilder().setPath(path).setDepth(nonNegative(depth, "depth"))
            .setMaxEntries(nonNegative(maxEntries, "maxEntries")).setStartAfter(startAfter))
        .build();
  }

  static Request listProcesses(int maxEntries) {
    return Request.newBuilder()
        .setListProcesses(dev.flotilla.agent.protocol.v1.ListProcessesRequest.newBuilder()
            .setMaxEntries(nonNegative(maxEntries, "maxEntries")))
        .build();
  }

  static GuestProcesses guestProcesses(Response r, String what) {
    var l = expect(r, Response.KindCase.LIST_PROCESSES, what).getListProcesses();
    List<GuestProcesses.Entry> out = new ArrayList<>(l.getProcessesCount());
    for (var p : l.getProcessesList()) {
      out.add(new GuestProcesses.Entry(p.getExecId(), p.getPid(), p.getArgvList(), p.getArgvTruncated(),
          p.getRunning() ? java.util.Optional.empty() : java.util.Optional.of(new ExitStatus(p.getExitCode(), p.getSignal())),
          p.getDetached(), p.getOutputEnd(), p.getStartedUnixMs()));
    }
    return new GuestProcesses(out, l.getTruncated());
  }

  static Request stat(String path, boolean followLinks) {
    return Request.newBuilder().setStat(StatRequest.newBuilder().setPath(path).setFollowSymlinks(followLinks)).build();
  }

  static Request makeDir(String path, boolean parents, int mode) {
    return Request.newBuilder()
        .setMakeDir(MakeDirRequest.newBuilder().setPath(path).setParents(parents).setMode(mode & 07777))
        .build();
  }

  static Request remove(String path, boolean recursive) {
    return Request.newBuilder().setRemove(RemoveRequest.newBuilder().setPath(path).setRecursive(recursive)).build();
  }

  static Request rename(String from, String to, boolean overwrite) {
    return Request.newBuilder()
        .setRename(RenameRequest.newBuilder().setFrom(from).setTo(to).setOverwrite(overwrite))
        .build();
  }

  static Request watchDir(String path, boolean recursive, int window) {
    return Request.newBuilder()
        .setWatchDir(WatchDirRequest.newBuilder().setPath(path).setRecursive(recursive).setInitialWindow(window))
        .build();
  }

  static Request cancelWatch(int streamId) {
    return Request.newBuilder().setCancelWatch(CancelWatchRequest.newBuilder().setStreamId(streamId)).build();
  }

  private static int nonNegative(int v, String name) {
    if (v < 0) throw new IllegalArgumentException(name + " must not be negative: " + v);
    return v;
  }

  static DirListing dirListing(Response r, String what) {
    ListDirResponse l = expect(r, Response.KindCase.LIST_DIR, what).getListDir();
    List<FileEntry> entries = new ArrayList<>(l.getEntriesCount());
    for (FileInfo f : l.getEntriesList()) entries.add(fileEntry(f));
    return new DirListing(l.getPath(), entries, l.getTruncated(), l.getIncomplete());
  }

  static FileEntry fileEntry(FileInfo f) {
    FileEntry.Type type = switch (f.getType()) {
      case FILE -> FileEntry.Type.FILE;
      case DIR -> FileEntry.Type.DIR;
      case SYMLINK -> FileEntry.Type.SYMLINK;
      case OTHER, UNRECOGNIZED -> FileEntry.Type.OTHER;
    };
    return new FileEntry(f.getName(), f.getPath(), type, f.getSize(), f.getMode() & 07777,
        Instant.ofEpochMilli(f.getMtimeUnixMs()), f.getSymlinkTarget());
  }

  /** The events of one watch DATA frame, in order. */
  static List<FsEvent> fsEvents(WatchEvents batch) {
    List<FsEvent> out = new ArrayList<>(batch.getEventsCount());
    for (WatchEvent e : batch.getEventsList()) {
      FsEvent.Kind kind = switch (e.getKind()) {
        case CREATED -> FsEvent.Kind.CREATED;
        case MODIFIED -> FsEvent.Kind.MODIFIED;
        case DELETED -> FsEvent.Kind.DELETED;
        // An event this host does not know is a change it cannot name: read the directory again.
        case OVERFLOW, KIND_UNSPECIFIED, UNRECOGNIZED -> FsEvent.Kind.OVERFLOW;
      };
      out.add(new FsEvent(kind, kind == FsEvent.Kind.OVERFLOW ? "" : e.getPath(), e.getDropped()));
    }
    return out;
  }

  static Request stats() {
    return Request.newBuilder().setStats(StatsRequest.getDefaultInstance()).build();
  }

  static Request openPort(int port, int window) {
    return Request.newBuilder().setOpenPort(dev.flotilla.agent.protocol.v1.OpenPortRequest.newBuilder()
        .setPort(port).setInitialWindow(window)).build();
  }

  static Request ping(long nonce) {
    return Request.newBuilder().setPing(PingRequest.newBuilder().setNonce(nonce)).build();
  }

  static Request shutdown(Duration grace, boolean powerOff) {
    long millis = Math.max(0, Math.min(grace.toMillis(), 0xFFFF_FFFFL));
    return Request.newBuilder()
        .setShutdown(ShutdownRequest.newBuilder().setGraceMillis((int) millis).setPowerOff(powerOff))
        .build();
  }

  static GuestInfo guestInfo(Response r) {
    GuestDetails d = expect(r, Response.KindCase.HANDSHAKE, "handshake").getHandshake();
    return new GuestInfo(d.getKernel(), d.getHostname(), d.getAgentVersion(), d.getPidNamespaceRoot(),
        d.getProtocolVersion(), d.getAgentPid(), d.getVirtualization(), d.getBootTimeUnixMs(), d.getSandboxId(),
        d.getIncarnation(), d.getRandomId());
  }

  /**
   * The answer to a rebirth handshake: the agent must now serve the identity asked for. An agent
   * older than rebirth support ignores the field and answers as the template (or with no identity
   * at all), which would leave a copy of the template serving under this sandbox's name.
   */
  static GuestInfo rebornGuestInfo(Response r, String sandboxId, long incarnation) {
    GuestInfo info = guestInfo(r);
    if (!info.sandboxId().equals(sandboxId) || info.incarnation() != incarnation) {
      throw new AgentException(AgentException.Code.FAILED_PRECONDITION, "handshake: the agent did not take the clone's"
          + " identity (it answered as sandbox '" + info.sandboxId() + "' incarnation " + info.incarnation()
          + ", asked for '" + sandboxId + "' incarnation " + incarnation + "): its agent is older than rebirth support;"
          + " discard the VM and cold-boot, or rebuild the template with a current guest image");
    }
    return info;
  }

  static long pid(Response r, String what) {
    return expect(r, Response.KindCase.EXEC_PROCESS, what).getExecProcess().getPid();
  }

  static ExitStatus exitStatus(Response r, String what) {
    WaitProcessResponse w = expect(r, Response.KindCase.WAIT_PROCESS, what).getWaitProcess();
    return new ExitStatus(w.getExitCode(), w.getSignal());
  }

  static long fileSize(Response r, String what) {
    return expect(r, Response.KindCase.WRITE_FILE, what).getWriteFile().getSize();
  }

  static FileChunk fileChunk(Response r, String what) {
    ReadFileResponse f = expect(r, Response.KindCase.READ_FILE, what).getReadFile();
    return new FileChunk(f.getData().toByteArray(), f.getEof(), f.getSize());
  }

  static GuestStats guestStats(Response r) {
    StatsResponse s = expect(r, Response.KindCase.STATS, "stats").getStats();
    return new GuestStats(s.getMemoryUsedBytes(), s.getMemoryTotalBytes(), s.getCpuTimeNanos(),
        s.getProcessCount(), s.getUptimeMillis());
  }

  static long pingNonce(Response r) {
    return expect(r, Response.KindCase.PING, "ping").getPing().getNonce();
  }

  /** For calls that answer Empty: only the error matters. */
  static void empty(Response r, Response.KindCase expected, String what) {
    expect(r, expected, what);
  }

  /** The agent's error as an exception; {@code what} names the call for the message. */
  static AgentException error(Error e, String what) {
    return new AgentException(code(e.getCode()), what + ": " + e.getMessage());
  }

  static AgentException.Code code(Error.Code c) {
    return switch (c) {
      case INVALID_ARGUMENT -> AgentException.Code.INVALID_ARGUMENT;
      case NOT_FOUND -> AgentException.Code.NOT_FOUND;
      case ALREADY_EXISTS -> AgentException.Code.ALREADY_EXISTS;
      case PERMISSION_DENIED -> AgentException.Code.PERMISSION_DENIED;
      case RESOURCE_EXHAUSTED -> AgentException.Code.RESOURCE_EXHAUSTED;
      case FAILED_PRECONDITION -> AgentException.Code.FAILED_PRECONDITION;
      case UNIMPLEMENTED -> AgentException.Code.UNIMPLEMENTED;
      case INTERNAL -> AgentException.Code.INTERNAL;
      case UNAVAILABLE -> AgentException.Code.UNAVAILABLE;
      case UNKNOWN, UNRECOGNIZED -> AgentException.Code.UNKNOWN;
    };
  }

  /** The expected payload of a response, or the agent's error as an exception. */
  static Response expect(Response r, Response.KindCase expected, String what) {
    if (r.getKindCase() == expected) return r;
    if (r.getKindCase() == Response.KindCase.ERROR) throw error(r.getError(), what);
    throw new AgentException(AgentException.Code.INTERNAL,
        what + ": agent answered " + r.getKindCase() + ", expected " + expected);
  }
}
