package dev.flotilla.vm.supervisor;

import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.sandbox.protocol.ExecInput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.InteractiveExec;
import dev.flotilla.sandbox.protocol.DirPage;
import dev.flotilla.sandbox.protocol.FsChange;
import dev.flotilla.sandbox.protocol.FsEntry;
import dev.flotilla.sandbox.protocol.FsValue;
import dev.flotilla.sandbox.protocol.WatchStarted;

import dev.flotilla.sandbox.protocol.SandboxProcess;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import java.time.Duration;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.util.ByteString;

/**
 * Messages of the {@link VmSupervisor} actor: what its owner (the sandbox entity) may ask, and
 * what it reports back. Every report carries the incarnation it is about, so the owner can drop
 * late news from an older VM. Data paths (exec output, files) are Pekko StreamRefs, so the
 * caller may sit on another node of the cluster.
 */
public final class VmSupervisorProtocol {
  private VmSupervisorProtocol() {}

  // ---------------------------------------------------------------- requests from the owner

  public sealed interface Command {}

  /** Freeze the VM. Fails with a reason if the VM is not running or the driver cannot pause. */
  public record Pause(ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /** Thaw the VM. */
  public record Resume(ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /**
   * Save the running VM's complete state into {@code dir} (a new node-only directory) and end the
   * VM ({@link dev.flotilla.vm.Vm#suspend}). On success the owner hears {@link VmSuspended} first,
   * then the reply acks, and the supervisor stops: no {@link VmExited} follows. On failure the reply
   * says why; the VM then runs on (or, if it ended, {@link VmExited} reports it as usual).
   */
  public record Suspend(java.nio.file.Path dir, ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /**
   * Save the running VM's complete state into {@code dir} (a new node-only directory) while it goes
   * on running ({@link dev.flotilla.vm.Vm#snapshot}): a fork's source. The guest is stopped for the
   * save only; the agent's connection is closed for it and made again, and the reply comes once the
   * agent serves again (or with the snapshot anyway when it does not: the health checks see to it).
   */
  public record SnapshotVm(java.nio.file.Path dir, ActorRef<StatusReply<dev.flotilla.vm.Snapshot>> replyTo) implements Command {}

  /**
   * Change the running (or paused) VM's resources in place to {@code vcpus} and {@code memoryMiB}
   * (the new totals). Fails with the driver's reason (FAILED_PRECONDITION) for what it cannot
   * change live; the VM is then left as it was.
   */
  public record Resize(int vcpus, int memoryMiB, ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /**
   * Stop the VM (agent shutdown, then the driver's stop with {@code grace}), report
   * {@link VmExited} with {@code requested=true}, reply, and stop the actor.
   */
  public record Stop(Duration grace, ActorRef<Done> replyTo) implements Command {}

  /**
   * Run a process in the guest. The reply carries a stream of its output, ending with one
   * {@link ExecExited}; the stream is backpressured end to end (a slow reader slows the process).
   */
  public record Exec(ExecSpec spec, ActorRef<StatusReply<SourceRef<ExecEvent>>> replyTo) implements Command {}

  /**
   * Run a process whose stdin comes from {@code input} while it runs (with a pseudo-terminal when
   * {@code exec.tty()}): resizes and signals go to it in order with the stdin bytes, and the end
   * of {@code input} ends its stdin. The reply carries its output as for {@link Exec}; a reader
   * that goes away kills it.
   */
  public record ExecInteractive(InteractiveExec exec, SourceRef<ExecInput> input,
      ActorRef<StatusReply<SourceRef<ExecEvent>>> replyTo) implements Command {}

  /** Write a file in the guest from a stream of chunks; replies with the final size in bytes. */
  public record WriteFile(String path, int mode, SourceRef<ByteString> data, ActorRef<StatusReply<Long>> replyTo)
      implements Command {}

  /** Read a file from the guest as a stream of chunks. */
  public record ReadFile(String path, ActorRef<StatusReply<SourceRef<ByteString>>> replyTo) implements Command {}

  /** Resource usage as the guest sees it. */
  public record GetStats(ActorRef<StatusReply<GuestStats>> replyTo) implements Command {}

  // Background processes: started detached (output in a bounded ring in the guest), named by
  // the guest agent's exec id, which outlives this supervisor (a node restart re-attaches).

  /** Start a background process; replies once it runs, with its id. */
  public record StartProcess(ExecSpec spec, ActorRef<StatusReply<SandboxProcess>> replyTo) implements Command {}

  /** The processes the guest agent knows, oldest first (bounded by the agent). */
  public record ListProcesses(ActorRef<StatusReply<SandboxProcess.Listing>> replyTo) implements Command {}

  /**
   * A background process's output from {@code offset} ({@link dev.flotilla.sandbox.protocol.ProcessOutput}
   * chunks), then its {@link ExecExited} once it has ended; the same call re-attaches from a later offset.
   */
  public record AttachProcess(String processId, long offset, ActorRef<StatusReply<SourceRef<ExecEvent>>> replyTo)
      implements Command {}

  /** Send signal number {@code signal} to a process; a process that has ended is left alone. */
  public record SignalProcess(String processId, int signal, ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /**
   * How many calls are under way (exec streams still open, file transfers, attach streams): whether
   * the sandbox is in use, for its idle timeout.
   */
  public record CallsInFlight(ActorRef<Integer> replyTo) implements Command {}

  /**
   * Forwards one TCP connection to {@code port} on the loopback of the sandbox's own network:
   * {@code in} goes to the socket (its completion half-closes it, its failure resets it), the
   * socket's bytes come back as the reply's stream once connected (it completes when the sandbox's
   * side half-closes, fails when the connection is reset). UNAVAILABLE when nothing listens there.
   * Counts as a call in flight until the connection is over both ways.
   */
  public record PortForward(int port, SourceRef<ByteString> in, ActorRef<StatusReply<SourceRef<ByteString>>> replyTo)
      implements Command {}

  // ---------------------------------------------------------------- the guest's file system
  // Paths resolve inside the sandbox's root only; a link is never followed out of it (the agent's resolver).

  /**
   * Lists a directory down to {@code depth} levels (1: its own entries), at most
   * {@code maxEntries} (0: the agent's default) after {@code startAfter} (empty: from the start).
   */
  public record ListDir(String path, int depth, int maxEntries, String startAfter, ActorRef<StatusReply<DirPage>> replyTo)
      implements Command {}

  /** The entry at {@code path}: a link itself unless {@code followLinks} (then followed inside the root). */
  public record Stat(String path, boolean followLinks, ActorRef<StatusReply<FsEntry>> replyTo) implements Command {}

  /** Makes a directory ({@code mode} 0: 0755); {@code parents}: mkdir -p. Replies with the directory. */
  public record MakeDir(String path, boolean parents, int mode, ActorRef<StatusReply<FsEntry>> replyTo) implements Command {}

  /** Removes an entry (a link itself); a non-empty directory only when {@code recursive}. Replies with the count removed. */
  public record Remove(String path, boolean recursive, ActorRef<StatusReply<Long>> replyTo) implements Command {}

  /** Renames {@code from} to {@code to}; an existing {@code to} is ALREADY_EXISTS unless {@code overwrite}. */
  public record Rename(String from, String to, boolean overwrite, ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /**
   * Watches a directory (recursively: the ones under it too). Replies once the watch runs with a
   * stream: one {@link WatchStarted}, then {@link FsChange}s until the reader cancels, the
   * directory goes or the VM does. Events the reader is too slow for are dropped and counted in an
   * OVERFLOW change; the guest agent's queue is bounded the same way.
   */
  public record WatchDir(String path, boolean recursive, ActorRef<StatusReply<SourceRef<FsValue>>> replyTo) implements Command {}

  // ---------------------------------------------------------------- exec data

  /**
   * The sandbox's main process: started by the supervisor once the agent answers (adopted, if the
   * VM already runs it), its output read into {@code log}. When it ends, the VM is stopped (its
   * other processes get {@code stopGrace}) and {@link VmExited} reports the main process's status,
   * not requested: the sandbox's restart policy applies, as for a container.
   *
   * @param ringBytes the agent-side ring that holds its output while the node is not reading
   */
  public record MainProcess(ExecSpec spec, MainLog log, int ringBytes, Duration stopGrace) {
    public MainProcess {
      if (spec.argv().isEmpty()) throw new IllegalArgumentException("a main process needs a command");
      if (ringBytes <= 0) throw new IllegalArgumentException("ringBytes must be positive");
    }
  }

  /** @see dev.flotilla.agent.protocol.client.GuestStats */
  public record GuestStats(long memoryUsedBytes, long memoryTotalBytes, long cpuTimeNanos, int processCount, long uptimeMillis) {}

  // ---------------------------------------------------------------- reports to the owner

  public sealed interface Report {
    long incarnation();
  }

  /**
   * The VM runs and its agent answered the handshake for this sandbox and incarnation.
   *
   * @param adopted true when an already-running VM was re-attached rather than started
   */
  public record VmReady(long incarnation, VmHandle handle, String guestKernel, boolean adopted) implements Report {}

  /** The VM could not be started (or adopted); nothing of it is left running. */
  public record VmStartFailed(long incarnation, String reason) implements Report {}

  /**
   * The VM was suspended into {@code snapshot} and has ended (see {@link Suspend}). After this
   * report the supervisor stops itself.
   */
  public record VmSuspended(long incarnation, dev.flotilla.vm.Snapshot snapshot) implements Report {}

  /** The VM is gone. After this report the supervisor stops itself. */
  public record VmExited(long incarnation, VmExit exit) implements Report {}

  /**
   * The agent stopped answering (health pings failed past the limit) although the VM process
   * may still exist. The supervisor kills the VM and then also reports {@link VmExited}.
   */
  public record AgentLost(long incarnation, String reason) implements Report {}
}
