package dev.flotilla.agent.protocol.client;

import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;

/**
 * Host side of the guest-agent API, over one framed, multiplexed connection.
 *
 * <p>Every call takes a deadline; a call that misses it fails with {@link AgentException} of
 * code {@link AgentException.Code#DEADLINE_EXCEEDED} (the call may still have happened in the
 * guest). Calls that wait for something in the guest ({@link #waitProcess}) say so in their name
 * and take the deadline of that wait. When the connection drops, every pending call fails with
 * {@link AgentException.Code#CONNECTION_LOST} and {@link #closed()} completes.
 *
 * <p>The first call on a connection must be {@link #handshake}: the agent refuses everything
 * else until the host has named the sandbox and incarnation the agent was started for.
 */
public interface AgentClient extends AutoCloseable {

  /** Names the sandbox and incarnation, without a lease; fails with FAILED_PRECONDITION if the agent runs another. */
  default CompletableFuture<GuestInfo> handshake(String sandboxId, long incarnation, Duration deadline) {
    return handshake(sandboxId, incarnation, Duration.ZERO, deadline);
  }

  /**
   * Names the sandbox and incarnation and states the agent's lease (zero: none): from now on the
   * host must send something (e.g. a ping) within every {@code lease}, or the agent ends the
   * sandbox (see HandshakeRequest.lease_ms in agent.proto).
   */
  CompletableFuture<GuestInfo> handshake(String sandboxId, long incarnation, Duration lease, Duration deadline);

  /**
   * A handshake that also says whether the host is about to freeze the agent ({@code pausing}:
   * PauseSandbox) and keeps its sandbox meanwhile. Only an announced freeze restarts the lease at
   * the thaw; any other time the agent does not run counts against it. A handshake with
   * {@code pausing} false (after a resume) withdraws the announcement. A client that cannot say
   * so only states the lease.
   */
  default CompletableFuture<GuestInfo> handshake(String sandboxId, long incarnation, Duration lease, boolean pausing,
      Duration deadline) {
    return handshake(sandboxId, incarnation, lease, deadline);
  }

  /**
   * Starts a process. Its output is pushed to {@code sink} as it comes, paced by flow control:
   * the agent sends no more than the window the sink has not yet released (see {@link OutputSink}).
   * The returned future completes once the process has started, with its guest pid.
   */
  CompletableFuture<Long> exec(ExecRequest request, OutputSink sink, Duration deadline);

  /**
   * Starts a detached process: its stdout and stderr go to a ring of {@code ringBytes} in the
   * agent (which caps it), outlive this connection, and are read with {@link #readOutput} from any
   * connection. Completes with its guest pid; fails with ALREADY_EXISTS when the exec id is in use.
   */
  CompletableFuture<Long> execDetached(ExecRequest request, int ringBytes, Duration deadline);

  /**
   * Reads a detached process's output from {@code offset}, at most {@code maxBytes}; when there is
   * none yet and the output goes on, the agent holds the answer up to {@code wait} for some.
   * {@code deadline} must exceed {@code wait}.
   */
  CompletableFuture<OutputRead> readOutput(String execId, long offset, int maxBytes, Duration wait, Duration deadline);

  /** Waits up to {@code deadline} for the process to end. */
  CompletableFuture<ExitStatus> waitProcess(String execId, Duration deadline);

  CompletableFuture<Void> signalProcess(String execId, int signal, Duration deadline);

  CompletableFuture<Void> writeStdin(String execId, byte[] data, Duration deadline);

  CompletableFuture<Void> closeStdin(String execId, Duration deadline);

  /** The terminal of a process started with a {@link ExecRequest.Tty} is now {@code rows} x {@code cols}. */
  default CompletableFuture<Void> resizeTty(String execId, int rows, int cols, Duration deadline) {
    return unimplemented("resizeTty");
  }

  /**
   * Writes a file of any size in chunks under the frame limit; {@code data} is read to its end.
   * The deadline covers the whole transfer. Completes with the file's final size.
   */
  CompletableFuture<Long> writeFile(String path, InputStream data, int mode, Duration deadline);

  /** Reads a whole file in chunks into {@code out}; completes with the number of bytes read. */
  CompletableFuture<Long> readFile(String path, OutputStream out, Duration deadline);

  /** Reads one chunk of at most {@code maxLength} bytes at {@code offset}. */
  CompletableFuture<FileChunk> readFileChunk(String path, long offset, int maxLength, Duration deadline);

  /**
   * Lists {@code path} (a directory, or a link to one inside the sandbox's root): its entries down
   * to {@code depth} levels (1: its own), at most {@code maxEntries} (0: the agent's default; the
   * agent caps it), after {@code startAfter} (empty: from the start; else a previous page's
   * {@link DirListing#nextStartAfter()}). Links are listed, never entered.
   */
  default CompletableFuture<DirListing> listDir(String path, int depth, int maxEntries, String startAfter,
      Duration deadline) {
    return unimplemented("listDir");
  }

  /** The entry at {@code path}; a link itself unless {@code followLinks} (then followed inside the root). */
  default CompletableFuture<FileEntry> stat(String path, boolean followLinks, Duration deadline) {
    return unimplemented("stat");
  }

  /**
   * Makes a directory with {@code mode} (0: 0755); with {@code parents}, its missing parents too
   * and an existing directory is no error ({@code mkdir -p}). Completes with the directory.
   */
  default CompletableFuture<FileEntry> makeDir(String path, boolean parents, int mode, Duration deadline) {
    return unimplemented("makeDir");
  }

  /**
   * Removes the entry (a link itself, never its target); a non-empty directory only when
   * {@code recursive}. Completes with the number of entries removed.
   */
  default CompletableFuture<Long> remove(String path, boolean recursive, Duration deadline) {
    return unimplemented("remove");
  }

  /** Renames {@code from} to {@code to}; an existing {@code to} fails ALREADY_EXISTS unless {@code overwrite}. */
  default CompletableFuture<Void> rename(String from, String to, boolean overwrite, Duration deadline) {
    return unimplemented("rename");
  }

  /**
   * Watches a directory (and, when {@code recursive}, those under it) until cancelled, until the
   * directory goes or the connection closes; events go to {@code listener}. Completes once the
   * watch runs, within {@code deadline}.
   */
  default CompletableFuture<DirWatch> watchDir(String path, boolean recursive, WatchListener listener,
      Duration deadline) {
    return unimplemented("watchDir");
  }

  /**
   * The processes the agent knows, oldest first: running ones, and exited ones until a
   * {@link #waitProcess} has reported their exit and the agent's retention time has passed. At most
   * {@code maxEntries} (0: the agent's default; the agent caps it).
   */
  default CompletableFuture<GuestProcesses> listProcesses(int maxEntries, Duration deadline) {
    return unimplemented("listProcesses");
  }

  CompletableFuture<GuestStats> stats(Duration deadline);

  /** Round trip to the agent; completes with the measured round-trip time. */
  CompletableFuture<Duration> ping(Duration deadline);

  /** Asks the agent to end its processes (SIGTERM, then SIGKILL after {@code grace}) and exit. */
  CompletableFuture<Void> shutdown(Duration grace, boolean powerOff, Duration deadline);

  /** Completes (never exceptionally) when the connection is closed, by either side. */
  CompletableFuture<Void> closed();

  boolean isOpen();

  /**
   * Why the connection closed, as soon as it starts to: null while open or after a clean close; a
   * {@link dev.flotilla.agent.protocol.frame.ProtocolException} when the agent broke the protocol, a
   * {@link dev.flotilla.agent.protocol.frame.FrameConnection.PeerNotReadingException} when it stopped
   * reading. Either means the agent cannot be trusted with the connection any more.
   */
  default Throwable closeCause() {
    return null;
  }

  private static <T> CompletableFuture<T> unimplemented(String what) {
    return CompletableFuture.failedFuture(new AgentException(AgentException.Code.UNIMPLEMENTED,
        what + ": not offered by this client"));
  }

  /** Closes the connection; pending calls fail with CONNECTION_LOST. */
  @Override
  void close();
}
