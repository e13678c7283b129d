package dev.flotilla.node.grpc;

import com.google.protobuf.ByteString;
import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.ExitStatus;
import dev.flotilla.api.v1.HistoryEvent;
import dev.flotilla.api.v1.IdleAction;
import dev.flotilla.api.v1.ReadLogsResponse;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.TimeoutAction;
import dev.flotilla.sandbox.Lifetime;
import dev.flotilla.sandbox.Network;
import dev.flotilla.sandbox.Phase;
import dev.flotilla.sandbox.RestartPolicy;
import dev.flotilla.sandbox.SandboxChanged;
import dev.flotilla.sandbox.SandboxHistory;
import dev.flotilla.sandbox.SandboxSpec;
import dev.flotilla.sandbox.SandboxView;
import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.sandbox.protocol.ExecOutput;
import dev.flotilla.sandbox.protocol.DirPage;
import dev.flotilla.sandbox.protocol.FsChange;
import dev.flotilla.sandbox.protocol.FsEntry;
import dev.flotilla.sandbox.protocol.FsValue;
import dev.flotilla.sandbox.protocol.WatchStarted;
import java.time.Duration;
import java.time.Instant;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/** Protobuf <-> domain, at the edge only: generated types never reach the entities. */
final class Translations {
  private Translations() {}

  static SandboxSpec fromProto(dev.flotilla.api.v1.SandboxSpec s) {
    RestartPolicy policy = switch (s.getRestartPolicy()) {
      case ALWAYS -> RestartPolicy.ALWAYS;
      case ON_FAILURE -> RestartPolicy.ON_FAILURE;
      case NEVER -> RestartPolicy.NEVER;
      default -> null; // unspecified: the server default
    };
    Lifetime.TimeoutAction onTimeout = switch (s.getOnTimeout()) {
      case TIMEOUT_STOP -> Lifetime.TimeoutAction.STOP;
      case TIMEOUT_DELETE, TIMEOUT_ACTION_UNSPECIFIED -> Lifetime.TimeoutAction.DELETE;
      default -> throw new IllegalArgumentException("on_timeout " + s.getOnTimeoutValue() + " is not one this node knows: "
          + "TIMEOUT_DELETE or TIMEOUT_STOP");
    };
    Lifetime.IdleAction onIdle = switch (s.getOnIdle()) {
      case IDLE_PAUSE -> Lifetime.IdleAction.PAUSE;
      case IDLE_SUSPEND -> Lifetime.IdleAction.SUSPEND;
      case IDLE_STOP, IDLE_ACTION_UNSPECIFIED -> Lifetime.IdleAction.STOP;
      default -> throw new IllegalArgumentException("on_idle " + s.getOnIdleValue() + " is not one this node knows: IDLE_STOP, IDLE_PAUSE or IDLE_SUSPEND");
    };
    return new SandboxSpec(s.getDriver(), s.getVcpus(), s.getMemoryMib(), s.getLabelsMap(), policy, s.getDiskMib(), s.getImage(),
        s.getCommandList(), new Lifetime(duration(s.getTimeout(), "timeout"), onTimeout, duration(s.getIdleTimeout(), "idle_timeout"),
        onIdle), new Network(s.getNetwork().getMode(), s.getNetwork().getAllowList(), s.getNetwork().getDenyList()));
  }

  /** A protobuf Duration as a domain one; negative ones are refused. */
  static Duration duration(com.google.protobuf.Duration d, String field) {
    if (d.getSeconds() < 0 || d.getNanos() < 0) throw new IllegalArgumentException(field + " must not be negative");
    return Duration.ofSeconds(d.getSeconds(), d.getNanos());
  }

  static com.google.protobuf.Duration toProto(Duration d) {
    return com.google.protobuf.Duration.newBuilder().setSeconds(d.getSeconds()).setNanos(d.getNano()).build();
  }

  static dev.flotilla.api.v1.SandboxSpec toProto(SandboxSpec s) {
    return dev.flotilla.api.v1.SandboxSpec.newBuilder()
        .setDriver(s.driver())
        .setVcpus(s.vcpus())
        .setMemoryMib(s.memoryMiB())
        .setDiskMib(s.diskMiB())
        .setImage(s.image())
        .addAllCommand(s.command())
        .putAllLabels(s.labels())
        .setRestartPolicy(dev.flotilla.api.v1.RestartPolicy.valueOf(s.restartPolicy().name()))
        .setTimeout(toProto(s.lifetime().timeout()))
        .setOnTimeout(s.lifetime().onTimeout() == Lifetime.TimeoutAction.STOP ? TimeoutAction.TIMEOUT_STOP : TimeoutAction.TIMEOUT_DELETE)
        .setIdleTimeout(toProto(s.lifetime().idleTimeout()))
        .setOnIdle(switch (s.lifetime().onIdle()) {
          case PAUSE -> IdleAction.IDLE_PAUSE;
          case SUSPEND -> IdleAction.IDLE_SUSPEND;
          case STOP -> IdleAction.IDLE_STOP;
        })
        .setNetwork(dev.flotilla.api.v1.NetworkSpec.newBuilder().setMode(s.network().mode())
            .addAllAllow(s.network().allow()).addAllDeny(s.network().deny()))
        .build();
  }

  static Sandbox toProto(SandboxView v) {
    Sandbox.Builder b = Sandbox.newBuilder()
        .setId(v.id())
        .setTenant(v.tenant())
        .setSpec(toProto(v.spec()))
        .setPhase(toProto(v.phase()))
        .setIncarnation(v.incarnation())
        .setNode(v.node() == null ? "" : v.node())
        .setCreatedAt(timestamp(v.createdAt()))
        .setUpdatedAt(timestamp(v.updatedAt()))
        .setStatusMessage(v.statusMessage() == null ? "" : v.statusMessage())
        .setRestartCount(v.restartCount())
        .setDesiredRunning(v.desiredRunning());
    if (v.expiresAt() != null) b.setExpiresAt(timestamp(v.expiresAt()));
    return b.build();
  }

  static dev.flotilla.api.v1.Phase toProto(Phase p) {
    return dev.flotilla.api.v1.Phase.valueOf(p.name());
  }

  /** Requested phases; UNSPECIFIED (0) entries are refused by the caller's validation. */
  static Set<Phase> fromProto(List<dev.flotilla.api.v1.Phase> phases) {
    Set<Phase> out = EnumSet.noneOf(Phase.class);
    for (var p : phases) {
      if (p == dev.flotilla.api.v1.Phase.PHASE_UNSPECIFIED || p == dev.flotilla.api.v1.Phase.UNRECOGNIZED) {
        throw new IllegalArgumentException("phase filter: unknown phase " + p);
      }
      out.add(Phase.valueOf(p.name()));
    }
    return out;
  }

  static SandboxEvent toProto(SandboxChanged c) {
    return SandboxEvent.newBuilder().setSandbox(toProto(c.sandbox())).setEvent(c.event()).setAt(timestamp(c.at())).build();
  }

  static ExecResponse toProto(ExecEvent e) {
    if (e instanceof ExecOutput o) {
      ByteString data = ByteString.copyFrom(o.data().asByteBuffer());
      return o.stderr() ? ExecResponse.newBuilder().setStderr(data).build() : ExecResponse.newBuilder().setStdout(data).build();
    }
    ExecExited x = (ExecExited) e;
    return ExecResponse.newBuilder().setExit(ExitStatus.newBuilder().setExitCode(x.exitCode()).setSignal(x.signal())).build();
  }

  static dev.flotilla.api.v1.ProcessInfo toProto(dev.flotilla.sandbox.protocol.SandboxProcess p) {
    var b = dev.flotilla.api.v1.ProcessInfo.newBuilder().setId(p.id()).setPid(p.pid()).addAllArgv(p.argv())
        .setArgvTruncated(p.argvTruncated()).setRunning(p.running()).setAttachable(p.detached()).setOutputBytes(p.outputEnd())
        .setStartedAt(timestamp(p.startedAt()));
    if (!p.running()) b.setExit(ExitStatus.newBuilder().setExitCode(p.exitCode()).setSignal(p.signal()));
    return b.build();
  }

  static dev.flotilla.api.v1.ListProcessesResponse toProto(dev.flotilla.sandbox.protocol.SandboxProcess.Listing l) {
    var b = dev.flotilla.api.v1.ListProcessesResponse.newBuilder().setTruncated(l.truncated());
    for (var p : l.processes()) b.addProcesses(toProto(p));
    return b.build();
  }

  /** An attach's chunk with its offset, or the exit (at {@code end}, the offset past the last chunk). */
  static dev.flotilla.api.v1.AttachProcessResponse toAttach(ExecEvent e, long end) {
    var b = dev.flotilla.api.v1.AttachProcessResponse.newBuilder();
    if (e instanceof dev.flotilla.sandbox.protocol.ProcessOutput o) {
      ByteString data = ByteString.copyFrom(o.data().asByteBuffer());
      return (o.stderr() ? b.setStderr(data) : b.setStdout(data)).setOffset(o.offset()).build();
    }
    if (e instanceof ExecExited x) {
      return b.setExit(ExitStatus.newBuilder().setExitCode(x.exitCode()).setSignal(x.signal())).setOffset(end).build();
    }
    throw new IllegalStateException("an attach carries process output and its exit, not " + e.getClass().getSimpleName());
  }

  static ReadLogsResponse toLogs(ExecEvent e) {
    ExecResponse x = toProto(e);
    return switch (x.getKindCase()) {
      case STDOUT -> ReadLogsResponse.newBuilder().setStdout(x.getStdout()).build();
      case STDERR -> ReadLogsResponse.newBuilder().setStderr(x.getStderr()).build();
      default -> ReadLogsResponse.newBuilder().setExit(x.getExit()).build();
    };
  }

  static HistoryEvent toProto(SandboxHistory.Entry e) {
    return HistoryEvent.newBuilder().setSequence(e.sequence()).setAt(timestamp(e.at())).setKind(e.kind())
        .setIncarnation(e.incarnation()).setNode(e.node()).setDescription(e.description()).build();
  }

  // ------------------------------------------------------------------------------ file system

  static dev.flotilla.api.v1.FileInfo toProto(FsEntry e) {
    return dev.flotilla.api.v1.FileInfo.newBuilder().setName(e.name()).setPath(e.path())
        .setType(switch (e.type()) {
          case FILE -> dev.flotilla.api.v1.FileType.FILE_TYPE_FILE;
          case DIR -> dev.flotilla.api.v1.FileType.FILE_TYPE_DIR;
          case SYMLINK -> dev.flotilla.api.v1.FileType.FILE_TYPE_SYMLINK;
          case OTHER -> dev.flotilla.api.v1.FileType.FILE_TYPE_OTHER;
        })
        .setSize(e.size()).setMode(e.mode()).setModified(timestamp(e.modified())).setSymlinkTarget(e.symlinkTarget()).build();
  }

  static dev.flotilla.api.v1.ListDirResponse toProto(DirPage p) {
    var b = dev.flotilla.api.v1.ListDirResponse.newBuilder().setPath(p.path()).setNextPageToken(p.nextPageToken())
        .setIncomplete(p.incomplete());
    for (FsEntry e : p.entries()) b.addEntries(toProto(e));
    return b.build();
  }

  static dev.flotilla.api.v1.WatchDirResponse toWatch(FsValue v) {
    var b = dev.flotilla.api.v1.WatchDirResponse.newBuilder();
    if (v instanceof WatchStarted s) {
      return b.setStarted(dev.flotilla.api.v1.WatchStarted.newBuilder().setPath(s.path()).setWatchedDirs(s.watchedDirs())
          .setPartial(s.partial())).build();
    }
    if (v instanceof FsChange c) {
      return b.setEvent(dev.flotilla.api.v1.FileEvent.newBuilder().setPath(c.path()).setDropped(c.dropped())
          .setKind(switch (c.kind()) {
            case CREATED -> dev.flotilla.api.v1.FileEventKind.FILE_CREATED;
            case MODIFIED -> dev.flotilla.api.v1.FileEventKind.FILE_MODIFIED;
            case DELETED -> dev.flotilla.api.v1.FileEventKind.FILE_DELETED;
            case OVERFLOW -> dev.flotilla.api.v1.FileEventKind.FILE_EVENTS_LOST;
          })).build();
    }
    throw new IllegalStateException("not a watch element: " + v);
  }

  static Timestamp timestamp(Instant t) {
    if (t == null) return Timestamp.getDefaultInstance();
    return Timestamp.newBuilder().setSeconds(t.getEpochSecond()).setNanos(t.getNano()).build();
  }
}
