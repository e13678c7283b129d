package dev.flotilla.agent.guest.process;

import dev.flotilla.agent.guest.AgentError;
import java.io.IOException;
import java.io.OutputStream;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/** A process started by ExecProcess: its pipes, output pumps and exit. */
public final class GuestProcess {

  private final String execId;
  private final Process process;
  private final OutputPump stdout;
  private final OutputPump stderr;
  private final OutputStream stdin;
  /** Writes to stdin may block (the process does not read): in order, off the reader thread. */
  private final ExecutorService stdinWriter;
  private final CompletableFuture<ProcessExit> exit;
  private final OutputRing ring;
  private final java.util.List<String> argv;
  private final long startedMillis = System.currentTimeMillis();
  private volatile boolean stdinClosed;
  /** Its terminal, or null when it runs on pipes. */
  private final Pty pty;

  GuestProcess(String execId, java.util.List<String> argv, Process process, OutputPump stdout, OutputPump stderr, boolean withStdin,
      OutputRing ring, ExitWatch exits) {
    this(execId, argv, process, stdout, stderr, withStdin, ring, exits, null);
  }

  GuestProcess(String execId, java.util.List<String> argv, Process process, OutputPump stdout, OutputPump stderr, boolean withStdin,
      OutputRing ring, ExitWatch exits, Pty pty) {
    this.pty = pty;
    this.execId = execId;
    this.argv = java.util.List.copyOf(argv);
    this.ring = ring;
    this.process = process;
    this.stdout = stdout;
    this.stderr = stderr;
    this.stdin = !withStdin ? null : pty != null ? pty.input() : process.getOutputStream();
    this.stdinWriter = withStdin ? stdinExecutor(execId) : null;
    this.stdinClosed = !withStdin;
    this.exit = exits.exitOf(process);
    if (stdinWriter != null) {
      exit.whenComplete((e, t) -> onStdinWriter(new CompletableFuture<>(), this::closeStdinNow));
    }
  }

  public String execId() {
    return execId;
  }

  public long pid() {
    return process.pid();
  }

  /** The command it was started with, as the request gave it. */
  public java.util.List<String> argv() {
    return argv;
  }

  public long startedMillis() {
    return startedMillis;
  }

  public Process process() {
    return process;
  }

  public CompletableFuture<ProcessExit> exit() {
    return exit;
  }

  /** A detached process's output, or empty when its output goes to the connection that started it. */
  public java.util.Optional<OutputRing> ring() {
    return java.util.Optional.ofNullable(ring);
  }

  public boolean isAlive() {
    return process.isAlive();
  }

  public void grant(boolean toStderr, int increment) {
    (toStderr ? stderr : stdout).grant(increment);
  }

  /** The connection that started the process is gone. */
  public void discardOutput() {
    stdout.discard();
    stderr.discard();
  }

  /**
   * SIGTERM and SIGKILL through the JDK (which signals the pid it still owns, so never a recycled
   * one); others with {@code kill -s N pid}. A process that has already exited is left alone.
   */
  public void signal(int signal) {
    if (signal < 0 || signal > 64) throw AgentError.invalid("signal " + signal + " is not a signal number (1-64)");
    if (!process.isAlive()) return;
    switch (signal) {
      case 0 -> { }
      case 15 -> process.destroy();
      case 9 -> process.destroyForcibly();
      default -> kill(signal);
    }
  }

  private void kill(int signal) {
    try {
      Process k = new ProcessBuilder("kill", "-s", Integer.toString(signal), Long.toString(process.pid()))
          .redirectErrorStream(true)
          .start();
      String out = new String(k.getInputStream().readAllBytes()).trim();
      if (!k.waitFor(5, TimeUnit.SECONDS)) {
        k.destroyForcibly();
        throw new AgentError(dev.flotilla.agent.protocol.v1.Error.Code.INTERNAL, "kill -s " + signal + " did not finish");
      }
      if (k.exitValue() != 0 && process.isAlive()) {
        throw new AgentError(dev.flotilla.agent.protocol.v1.Error.Code.INTERNAL,
            "kill -s " + signal + " " + process.pid() + " failed: " + out);
      }
    } catch (IOException e) {
      throw new AgentError(dev.flotilla.agent.protocol.v1.Error.Code.INTERNAL, "cannot run kill: " + e.getMessage());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AgentError(dev.flotilla.agent.protocol.v1.Error.Code.INTERNAL, "interrupted");
    }
  }

  /** Writes to stdin in order; the future completes when the bytes are in the pipe. */
  public CompletableFuture<Integer> writeStdin(byte[] data) {
    requireStdin();
    CompletableFuture<Integer> f = new CompletableFuture<>();
    onStdinWriter(f, () -> {
      try {
        if (stdinClosed) throw AgentError.precondition("stdin of " + execId + " is closed");
        stdin.write(data);
        stdin.flush();
        f.complete(data.length);
      } catch (IOException e) {
        f.completeExceptionally(AgentError.precondition("stdin of " + execId + " is closed: " + e.getMessage()));
      } catch (RuntimeException e) {
        f.completeExceptionally(e);
      }
    });
    return f;
  }

  /** The terminal is now {@code rows} x {@code cols}; FAILED_PRECONDITION for a process without one. */
  public void resize(int rows, int cols) {
    if (pty == null) throw AgentError.precondition("exec " + execId + " has no terminal (start it with tty=true)");
    pty.resize(rows, cols);
  }

  /** Closes stdin after the writes queued before. */
  public CompletableFuture<Void> closeStdin() {
    requireStdin();
    CompletableFuture<Void> f = new CompletableFuture<>();
    onStdinWriter(f, () -> {
      closeStdinNow();
      f.complete(null);
    });
    return f;
  }

  private void onStdinWriter(CompletableFuture<?> f, Runnable task) {
    try {
      stdinWriter.execute(task);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      f.completeExceptionally(AgentError.precondition("stdin of " + execId + " is closed"));
    }
  }

  private void requireStdin() {
    if (stdinWriter == null) {
      throw AgentError.precondition("exec " + execId + " was started without stdin (set stdin=true)");
    }
  }

  private void closeStdinNow() {
    if (stdinClosed) return;
    stdinClosed = true;
    try {
      // A terminal's stdin ends as a typed ^D would end it; closing the master would hang the session up.
      if (pty != null && process.isAlive()) stdin.write(4);
      stdin.close();
    } catch (IOException ignored) {
      // the process is gone: nothing to close
    }
    stdinWriter.shutdown();
  }

  private static ExecutorService stdinExecutor(String execId) {
    ThreadPoolExecutor p = new ThreadPoolExecutor(1, 1, 5, TimeUnit.SECONDS, new LinkedBlockingQueue<>(), r -> {
      Thread t = new Thread(r, "stdin-" + execId);
      t.setDaemon(true);
      return t;
    });
    p.allowCoreThreadTimeOut(true);
    return p;
  }
}
