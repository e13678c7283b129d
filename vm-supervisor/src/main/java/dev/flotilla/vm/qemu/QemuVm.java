package dev.flotilla.vm.qemu;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One QEMU process. It runs in its own session ({@code setsid}), stdio to {@code qemu.log}, so it
 * outlives the node JVM and a terminal's signals; a later node adopts it by pid + start time.
 * QEMU is not daemonized: while this JVM is its parent the exit code and signal are exact; an
 * adopted QEMU's exit is seen by polling its pid (code unknown).
 */
final class QemuVm implements Vm {

  private static final Logger LOG = LoggerFactory.getLogger(QemuVm.class);
  private static final Duration QMP_TIMEOUT = Duration.ofSeconds(5);

  private final List<String> command;
  private final CompletableFuture<VmExit> exit = new CompletableFuture<>();
  private final Object qmpLock = new Object();
  private volatile VmHandle handle;
  private volatile ProcessHandle process;
  private volatile boolean requested;
  private volatile boolean started;

  /** A VM to start. */
  QemuVm(VmHandle handle, List<String> command) {
    this.handle = handle;
    this.command = List.copyOf(command);
  }

  /** A running VM found through its handle (already checked: same pid and start time). */
  QemuVm(VmHandle handle) {
    this.handle = handle;
    this.command = List.of();
    this.started = true;
    ProcessHandle.of(handle.pid()).ifPresentOrElse(this::watch,
        () -> exit.complete(new VmExit(-1, 0, "exited before it was adopted", false)));
  }

  /** The QEMU command line (without the {@code setsid} wrapper), for benchmarks and logs. */
  List<String> command() {
    return command;
  }

  @Override
  public VmHandle handle() {
    return handle;
  }

  @Override
  public void start(Duration deadline) throws VmException {
    if (started) throw new VmException("VM of " + handle.sandboxId() + " was already started");
    started = true;
    long until = System.nanoTime() + deadline.toNanos();
    Path dir = handle.stateDir();
    Path log = dir.resolve("qemu.log");
    try {
      Files.deleteIfExists(handle.agentSocket());
      Files.deleteIfExists(qmpSocket());
      Files.deleteIfExists(dir.resolve("console.log"));
    } catch (IOException e) {
      throw new VmException("cannot clean " + dir + ": " + e.getMessage(), e);
    }
    List<String> cmd = new ArrayList<>();
    // A new session: QEMU is no longer in the node's process group, so ^C or the node's death
    // does not reach it. setsid execs in place (we are not a group leader): the pid is QEMU's.
    cmd.add("setsid");
    cmd.addAll(command);
    Process p;
    try {
      Files.writeString(dir.resolve("qemu.cmdline"), String.join(" ", command) + "\n");
      p = new ProcessBuilder(cmd)
          .directory(dir.toFile())
          .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
          .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
          .redirectErrorStream(true)
          .start();
    } catch (IOException e) {
      throw new VmException("cannot start " + command.get(0) + ": " + e.getMessage(), e);
    }
    ProcessHandle ph = p.toHandle();
    OptionalLong st = HostProbe.startTime(ph.pid());
    handle = handle.withProcess(ph.pid(), st.orElse(0));
    process = ph;
    p.onExit().thenAccept(done -> {
      int code = done.exitValue();
      // Java reports a death by signal as 128 + signal
      boolean signalled = code > 128 && code < 160;
      exit.complete(signalled ? new VmExit(-1, code - 128, "QEMU killed by signal " + (code - 128), requested) : describeExit(code));
    });
    try {
      handle.save();
      // QMP answering means QEMU has set up its devices, including the agent socket
      while (true) {
        if (exit.isDone()) {
          throw new VmException("QEMU exited at start (" + exit.join().reason() + "): " + tail(log));
        }
        try {
          status(QMP_TIMEOUT);
          if (Files.exists(handle.agentSocket())) break;
        } catch (VmException e) {
          if (System.nanoTime() > until) throw new VmException("QEMU did not answer QMP within " + deadline + ": " + tail(log));
        }
        if (System.nanoTime() > until) throw new VmException("no agent socket within " + deadline);
        Thread.sleep(10);
      }
    } catch (VmException | IOException | InterruptedException e) {
      if (e instanceof InterruptedException) Thread.currentThread().interrupt();
      ph.destroyForcibly();
      awaitExit(Duration.ofSeconds(5));
      throw e instanceof VmException ve ? ve : new VmException("QEMU start failed: " + e.getMessage(), e);
    }
    LOG.info("QEMU pid {} started for sandbox {} incarnation {} ({})", ph.pid(), handle.sandboxId(),
        handle.incarnation(), handle.extra().get("accel"));
  }

  @Override
  public AgentAddress agentAddress() {
    return new AgentAddress(handle.agentSocket());
  }

  @Override
  public void pause() throws VmException {
    qmp("stop");
  }

  @Override
  public void resume() throws VmException {
    qmp("cont");
  }

  /** QMP {@code query-status}: "running", "paused", ... */
  String status(Duration timeout) throws VmException {
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), timeout)) {
        return q.status();
      } catch (IOException e) {
        throw new VmException("QMP of " + handle.sandboxId() + " failed: " + e.getMessage(), e);
      }
    }
  }

  private void qmp(String command) throws VmException {
    if (exit.isDone()) throw new VmException("VM of " + handle.sandboxId() + " has exited");
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), QMP_TIMEOUT)) {
        q.execute(command, null);
      } catch (IOException e) {
        throw new VmException("QMP " + command + " on VM of " + handle.sandboxId() + " failed: " + e.getMessage(), e);
      }
    }
  }

  /**
   * The polite part of stopping is the agent's Shutdown, which the supervisor sends first; the
   * guest then ends (agent exit -> panic -> {@code -no-reboot}). Here: QMP {@code quit} (a busybox
   * guest ignores ACPI power-down), then SIGTERM, then SIGKILL, each after {@code grace}.
   */
  @Override
  public void stop(Duration grace) {
    if (exit.isDone() || process == null) return;
    requested = true;
    if (awaitExit(Duration.ofMillis(Math.min(grace.toMillis(), 200)))) return;
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), QMP_TIMEOUT)) {
        q.quit();
      } catch (IOException e) {
        LOG.debug("QMP quit of {} failed: {}", handle.sandboxId(), e.toString());
      }
    }
    if (awaitExit(grace)) return;
    if (isOurProcess()) process.destroy();
    if (awaitExit(grace)) return;
    kill();
    awaitExit(Duration.ofSeconds(10));
  }

  @Override
  public void kill() {
    ProcessHandle p = process;
    if (p == null || exit.isDone()) return;
    requested = true;
    if (isOurProcess()) p.destroyForcibly();
  }

  @Override
  public CompletableFuture<VmExit> exitFuture() {
    return exit;
  }

  @Override
  public List<Long> pids() {
    ProcessHandle p = process;
    return p == null || exit.isDone() ? List.of() : List.of(p.pid());
  }

  @Override
  public void destroy() {
    if (!exit.isDone() && process != null) {
      LOG.warn("destroy of a running VM (pid {}): killing it first", process.pid());
      kill();
      awaitExit(Duration.ofSeconds(10));
    }
    try (Stream<Path> files = Files.walk(handle.stateDir())) {
      files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
    } catch (IOException e) {
      LOG.warn("cannot remove {}: {}", handle.stateDir(), e.toString());
    }
  }

  private void watch(ProcessHandle ph) {
    process = ph;
    // Not our child: no exit code, only that it is gone (ProcessHandle polls).
    ph.onExit().thenRun(() -> exit.complete(
        agentExit().orElseGet(() -> new VmExit(-1, 0, "QEMU exited (adopted: exit code unknown)", requested))));
  }

  private boolean isOurProcess() {
    return HostProbe.isSameProcess(handle.pid(), handle.startTime());
  }

  private boolean awaitExit(Duration d) {
    try {
      exit.get(d.toMillis(), TimeUnit.MILLISECONDS);
      return true;
    } catch (TimeoutException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return exit.isDone();
    } catch (ExecutionException e) {
      return true;
    }
  }

  private Path qmpSocket() {
    return Path.of(Optional.ofNullable(handle.extra().get("qmpSocket"))
        .orElse(handle.stateDir().resolve("qmp.sock").toString()));
  }

  private VmExit describeExit(int code) {
    if (code == 0) {
      // -no-reboot: the guest's end (its init, i.e. tini and the agent, exiting) ends QEMU with 0
      return agentExit().orElseGet(() -> new VmExit(0, 0, requested ? "stopped" : "guest ended (agent exit or power off)", requested));
    }
    return new VmExit(code, 0, "QEMU exited with " + code + ": " + tail(handle.stateDir().resolve("qemu.log")), requested);
  }

  /**
   * The guest agent's lease expiry, read from the serial console: the agent's own line, or the
   * kernel's panic when init (tini, which exits with the agent's code) exited with 75.
   */
  private Optional<VmExit> agentExit() {
    Path console = Path.of(Optional.ofNullable(handle.extra().get("consoleLog"))
        .orElse(handle.stateDir().resolve("console.log").toString()));
    String text = consoleTail(console);
    OptionalInt initExit = initExitCode(text);
    boolean leaseLine = text.contains("flotilla-guest-agent: lease expired:");
    if ((initExit.isPresent() && initExit.getAsInt() == VmExit.AGENT_LEASE_EXPIRED) || (initExit.isEmpty() && leaseLine)) {
      return Optional.of(VmExit.agentLeaseExpired(requested));
    }
    return Optional.empty();
  }

  private static final Pattern INIT_EXIT = Pattern.compile("Attempted to kill init! exitcode=0x([0-9a-fA-F]+)");

  /** The exit code of the guest's init from the kernel's last "Attempted to kill init!" panic. */
  static OptionalInt initExitCode(String console) {
    Matcher m = INIT_EXIT.matcher(console);
    OptionalInt last = OptionalInt.empty();
    while (m.find()) {
      int status = (int) Long.parseLong(m.group(1), 16);
      // a wait status: exit code in bits 8-15 when no signal (bits 0-6) ended it
      last = (status & 0x7f) == 0 ? OptionalInt.of((status >> 8) & 0xff) : OptionalInt.empty();
    }
    return last;
  }

  private static String consoleTail(Path console) {
    try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(console.toFile(), "r")) {
      long from = Math.max(0, f.length() - 16384);
      byte[] buf = new byte[(int) (f.length() - from)];
      f.seek(from);
      f.readFully(buf);
      return new String(buf, StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "";
    }
  }

  private static String tail(Path log) {
    try {
      String s = Files.readString(log, StandardCharsets.UTF_8).strip();
      return s.length() > 600 ? "..." + s.substring(s.length() - 600) : s;
    } catch (IOException e) {
      return "(no " + log.getFileName() + ")";
    }
  }
}
