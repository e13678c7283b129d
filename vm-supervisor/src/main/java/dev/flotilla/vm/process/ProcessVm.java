package dev.flotilla.vm.process;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.vm.AgentSecrets;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.io.IOException;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** One sandbox of the process driver. See {@link ProcessHypervisor} for its process tree. */
final class ProcessVm implements Vm {
  private static final Logger log = LoggerFactory.getLogger(ProcessVm.class);
  static final String AGENT_SOCKET = "agent.sock";
  static final String AGENT_LOG = "agent.log";
  /** What the guest agent logs when it ends the sandbox for lease expiry. */
  static final String LEASE_EXPIRED_LINE = "flotilla-guest-agent: lease expired:";

  /** Watches adopted processes (not our children, so no exit notification): one cheap /proc read each tick. */
  private static final ScheduledExecutorService WATCHER = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "flotilla-process-vm-watcher");
    t.setDaemon(true);
    return t;
  });

  private final ProcessHypervisorConfig config;
  private final HostFacts facts;
  private final VmSpec spec; // null when adopted
  private final boolean adopted;
  private final CompletableFuture<VmExit> exit = new CompletableFuture<>();
  private volatile VmHandle handle;
  private volatile Cgroups.Sandbox cgroups;
  private volatile Process process;
  private volatile boolean requested;
  private volatile boolean stoppedBySignal;

  private ProcessVm(ProcessHypervisorConfig config, HostFacts facts, VmSpec spec, VmHandle handle, boolean adopted) {
    this.config = config;
    this.facts = facts;
    this.spec = spec;
    this.handle = handle;
    this.adopted = adopted;
  }

  ProcessVm(ProcessHypervisorConfig config, HostFacts facts, VmSpec spec, java.util.Optional<Path> classDataArchive) {
    this(config, facts, spec, initialHandle(spec, facts), false);
    this.classDataArchive = classDataArchive.orElse(null);
  }

  private Path classDataArchive;

  static ProcessVm adopted(ProcessHypervisorConfig config, HostFacts facts, VmHandle handle) {
    ProcessVm vm = new ProcessVm(config, facts, null, handle, true);
    vm.cgroups = Cgroups.Sandbox.fromExtras(handle.extra());
    vm.watchAdopted();
    return vm;
  }

  /** For {@link ProcessHypervisor#reap}: a view of the handle's VM that does not require its root process alive. */
  static ProcessVm adoptedEvenIfGone(ProcessHypervisorConfig config, HostFacts facts, VmHandle handle) {
    ProcessVm vm = new ProcessVm(config, facts, null, handle, true);
    vm.cgroups = Cgroups.Sandbox.fromExtras(handle.extra());
    return vm;
  }

  /** Kills the root process (if it is still the handle's), then everything left, then removes the state. */
  void reap() {
    requested = true;
    if (handle.pid() > 0 && Procfs.isSameProcess(handle.pid(), handle.startTime())) {
      watchAdopted();
      killAndWait();
    }
    killLeftovers();
    exit.complete(new VmExit(-1, 0, "reaped", true));
    destroy();
  }

  private static VmHandle initialHandle(VmSpec spec, HostFacts facts) {
    Path dir = spec.stateDir().toAbsolutePath();
    return new VmHandle(ProcessHypervisor.DRIVER, spec.sandboxId(), spec.incarnation(), 0, 0, dir, dir.resolve(AGENT_SOCKET),
        Map.of(
            "tini", Boolean.toString(facts.tini().isPresent()),
            "userns", facts.idRange().map(r -> "subordinate:" + r.hostStart() + ":" + r.count()).orElse("map-root-user")));
  }

  /** 0700, and owned by the sandbox's root when that is not the node's uid, so the agent can bind its socket. */
  static void createStateDir(Path dir, long ownerUid) throws IOException {
    dir = dir.toAbsolutePath();
    Files.createDirectories(dir);
    if (ownerUid != 0) {
      // The sandbox's root is an unprivileged host uid: it must be able to reach its directory.
      for (Path p = dir.getParent(); p != null; p = p.getParent()) {
        if (!Files.getPosixFilePermissions(p).contains(java.nio.file.attribute.PosixFilePermission.OTHERS_EXECUTE)) {
          throw new IOException(p + " is not searchable by others (o+x), so the sandbox's root (host uid " + ownerUid
              + ") cannot reach its state directory; chmod o+x it or choose another state root");
        }
      }
    }
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
    if (ownerUid != 0) {
      Files.setAttribute(dir, "unix:uid", (int) ownerUid);
      Files.setAttribute(dir, "unix:gid", (int) ownerUid);
    }
  }

  @Override
  public VmHandle handle() {
    return handle;
  }

  @Override
  public AgentAddress agentAddress() {
    byte[] secret = agentSecret != null ? agentSecret : AgentSecrets.readIfTrusted(handle.stateDir());
    return new AgentAddress(handle.agentSocket(), java.util.OptionalLong.of(facts.idRange().map(HostFacts.IdRange::hostStart).orElse(NodeOnlyFiles.nodeUid())), secret);
  }

  private volatile byte[] agentSecret; // node-only, never in the handle: see AgentSecrets

  @Override
  public synchronized void start(Duration deadline) throws VmException {
    if (adopted || process != null) throw new VmException("VM " + handle.sandboxId() + " was already started");
    long until = System.nanoTime() + deadline.toNanos();
    Path socket = handle.agentSocket();
    Path logFile = handle.stateDir().resolve(AGENT_LOG);
    try {
      Files.deleteIfExists(socket);
    } catch (IOException e) {
      throw new VmException("cannot remove stale agent socket " + socket + ": " + e.getMessage(), e);
    }
    try {
      agentSecret = AgentSecrets.create(handle.stateDir());
      AgentSecrets.writeHandoff(handle.stateDir(), agentSecret, facts.idRange().map(HostFacts.IdRange::hostStart).orElse(NodeOnlyFiles.nodeUid()));
    } catch (IOException e) {
      throw new VmException("cannot write the agent's secret in " + handle.stateDir() + ": " + e.getMessage(), e);
    }
    Cgroups.Sandbox cg;
    try {
      cg = Cgroups.Sandbox.create(facts.cgroups(), cgroupName());
    } catch (IOException e) {
      throw new VmException("cannot create the sandbox's cgroups: " + e.getMessage(), e);
    }
    int pidsLimit = spec.pidsLimit() > 0 ? spec.pidsLimit() : config.defaultPidsLimit();
    Set<String> applied = cg.applyLimits(spec.memoryMiB() * 1024L * 1024L, spec.vcpus(), pidsLimit);
    cgroups = cg;
    ProcessBuilder pb = new ProcessBuilder(command())
        .directory(handle.stateDir().toFile())
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
        .redirectInput(ProcessBuilder.Redirect.PIPE);
    // The sandbox gets a clean environment: nothing of the node's (credentials, JAVA_TOOL_OPTIONS).
    pb.environment().clear();
    pb.environment().put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    pb.environment().put("HOME", "/");
    pb.environment().put("LANG", "C.UTF-8");
    Process p;
    try {
      p = pb.start();
    } catch (IOException e) {
      cg.remove();
      throw new VmException("cannot spawn the sandbox: " + e.getMessage(), e);
    }
    process = p;
    try {
      // The shell waits on stdin until it is in its cgroups, so everything it forks is limited.
      cg.join(p.pid());
      try (OutputStream release = p.getOutputStream()) {
        release.write('\n');
      }
    } catch (IOException e) {
      p.destroyForcibly();
      awaitQuietly(p);
      cg.remove();
      throw new VmException("cannot put the sandbox in its cgroups: " + e.getMessage(), e);
    }
    long startTime = Procfs.startTime(p.pid()).orElse(0);
    VmHandle h = handle.withProcess(p.pid(), startTime).withExtra("limits", String.join(",", applied));
    for (var e : cg.toExtras().entrySet()) h = h.withExtra(e.getKey(), e.getValue());
    handle = h;
    p.onExit().thenAcceptAsync(done -> exited(done.exitValue()));
    try {
      h.save();
    } catch (IOException e) {
      killAndWait();
      throw new VmException("cannot save the VM handle in " + h.stateDir() + ": " + e.getMessage(), e);
    }
    // The agent binds its socket once it is up; wait for that (or its death) up to the deadline.
    boolean initKnown = false;
    while (!Files.exists(socket) || !initKnown) {
      if (!initKnown) {
        OptionalLong init = Procfs.namespaceInit(p.pid());
        OptionalLong initStart = init.isPresent() ? Procfs.startTime(init.getAsLong()) : OptionalLong.empty();
        if (initStart.isPresent()) {
          initKnown = true;
          handle = handle.withExtra("init.pid", Long.toString(init.getAsLong())).withExtra("init.startTime", Long.toString(initStart.getAsLong()));
          try {
            handle.save();
          } catch (IOException e) {
            killAndWait();
            throw new VmException("cannot save the VM handle in " + h.stateDir() + ": " + e.getMessage(), e);
          }
          continue;
        }
      }
      if (exit.isDone()) {
        throw new VmException("the sandbox exited during start (" + exit.join().reason() + "); agent log: " + logTail(logFile));
      }
      if (System.nanoTime() > until) {
        killAndWait();
        throw new VmException("the guest agent did not open " + socket + " within " + deadline.toMillis() + " ms; agent log: " + logTail(logFile));
      }
      try {
        Thread.sleep(3);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        killAndWait();
        throw new VmException("interrupted while starting the sandbox");
      }
    }
  }

  private List<String> command() {
    List<String> inner = new ArrayList<>();
    inner.add(facts.unshare().toString());
    inner.add("--user");
    facts.idRange().ifPresentOrElse(r -> inner.addAll(HostFacts.mapArgs(r)), () -> inner.add("--map-root-user"));
    inner.addAll(List.of("--pid", "--mount", "--net", "--ipc", "--uts", "--fork", "--mount-proc", "--kill-child", "--"));
    facts.tini().ifPresent(t -> inner.addAll(List.of(t.toString(), "-s", "--")));
    inner.add(config.javaPath().toString());
    inner.addAll(config.jvmFlags());
    if (classDataArchive != null) inner.add("-XX:SharedArchiveFile=" + classDataArchive);
    inner.addAll(List.of(
        "-jar", config.agentJar().toAbsolutePath().toString(),
        "--listen", "unix:" + handle.agentSocket(),
        "--sandbox-id", handle.sandboxId(),
        "--incarnation", Long.toString(handle.incarnation()),
        "--secret-file", handle.stateDir().resolve(AgentSecrets.HANDOFF_FILE_NAME).toString()));
    String lease = spec == null ? null : spec.options().get(VmSpec.AGENT_LEASE_MS);
    if (lease != null) inner.addAll(List.of("--lease-ms", lease));
    List<String> cmd = new ArrayList<>(List.of(
        "/bin/sh", "-c", "read _ || exit 97; exec " + HostFacts.which("setsid").map(Path::toString).orElse("setsid") + " \"$@\" </dev/null", "flotilla-sandbox"));
    cmd.addAll(inner);
    return cmd;
  }

  private String cgroupName() {
    return handle.sandboxId().replaceAll("[^A-Za-z0-9_.-]", "_") + "-" + handle.incarnation();
  }

  private void watchAdopted() {
    long pid = handle.pid();
    long startTime = handle.startTime();
    ScheduledFuture<?>[] poll = new ScheduledFuture<?>[1];
    poll[0] = WATCHER.scheduleWithFixedDelay(() -> {
      if (!Procfs.isSameProcess(pid, startTime)) {
        poll[0].cancel(false);
        CompletableFuture.runAsync(() -> exited(null));
      }
    }, 0, 100, TimeUnit.MILLISECONDS);
    ProcessHandle.of(pid).ifPresent(ph -> ph.onExit().thenRun(() -> {
      if (!Procfs.isSameProcess(pid, startTime)) exited(null);
    }));
  }

  /** @param code the exit value of our child, null when unknown (an adopted VM) */
  private void exited(Integer code) {
    if (exit.isDone()) return;
    VmExit e;
    if (code == null) {
      // Not our child, so no exit code; but an agent that ended the sandbox said why in its log.
      e = logTail(handle.stateDir().resolve(AGENT_LOG)).contains(LEASE_EXPIRED_LINE)
          ? VmExit.agentLeaseExpired(requested)
          : new VmExit(-1, 0, requested ? "stopped" : "exited (status unknown: the VM was adopted, not our child)", requested);
    } else if (code == VmExit.AGENT_LEASE_EXPIRED) {
      // the agent's own exit code: unshare and tini pass it on
      e = VmExit.agentLeaseExpired(requested);
    } else if (code > 128 && code <= 128 + 64) {
      int sig = code - 128;
      e = new VmExit(-1, sig, "killed by signal " + sig + " (" + Procfs.signalName(sig) + ")", requested);
    } else if (code == 1 && logTail(handle.stateDir().resolve(AGENT_LOG)).contains("unshare: sigprocmask unblock failed")) {
      // unshare re-raises its child's fatal signal on itself, which fails only for SIGKILL
      // (SIG_DFL cannot be set for it): so the namespace's init died of SIGKILL.
      e = new VmExit(-1, 9, "the sandbox's init was killed by signal 9 (SIGKILL)", requested);
    } else if (code == 97) {
      e = new VmExit(code, 0, "the node went away before releasing the sandbox", requested);
    } else {
      e = new VmExit(code, 0, requested && code == 0 ? "stopped" : "exited with " + code, requested);
    }
    killLeftovers();
    removeCgroups();
    exit.complete(e);
  }

  /**
   * unshare's --kill-child does not survive its switch to the sandbox's uid (a credential change
   * clears the parent-death signal), so when unshare dies by itself the namespace may live on:
   * whatever is still in the sandbox's cgroups, or its recorded init, is killed here.
   */
  private void killLeftovers() {
    Set<Long> victims = new LinkedHashSet<>();
    String initPid = handle.extra().get("init.pid");
    String initStart = handle.extra().get("init.startTime");
    if (initPid != null && initStart != null) {
      try {
        long ip = Long.parseLong(initPid);
        if (Procfs.isSameProcess(ip, Long.parseLong(initStart))) victims.add(ip);
      } catch (NumberFormatException ignored) {
        // a hand-edited handle; the cgroup still finds them
      }
    }
    Cgroups.Sandbox cg = cgroups;
    if (cg != null) victims.addAll(cg.pids());
    victims.remove(ProcessHandle.current().pid());
    if (victims.isEmpty()) return;
    if (requested) {
      log.debug("sandbox {}: killing what is left of it: {}", handle.sandboxId(), victims);
    } else {
      log.info("sandbox {}: its root process is gone; killing what is left of it: {}", handle.sandboxId(), victims);
    }
    for (long v : victims) ProcessHandle.of(v).ifPresent(ProcessHandle::destroyForcibly);
    thawQuietly();
    for (int i = 0; i < 400 && victims.stream().anyMatch(v -> Procfs.stat(v).filter(st -> st.state() != 'Z').isPresent()); i++) {
      try {
        Thread.sleep(5);
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }

  private void removeCgroups() {
    Cgroups.Sandbox cg = cgroups;
    if (cg == null) return;
    // The namespace's processes die with its init, a moment after unshare: retry briefly.
    for (int i = 0; i < 200; i++) {
      if (cg.remove().isEmpty()) return;
      try {
        Thread.sleep(5);
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    log.warn("sandbox {} left cgroups behind: {}", handle.sandboxId(), cg.remove());
  }

  private boolean running() {
    return handle.pid() > 0 && !exit.isDone();
  }

  @Override
  public void pause() throws VmException {
    if (!running()) throw new VmException("the VM is not running");
    Cgroups.Sandbox cg = cgroups;
    if (cg != null && cg.canFreeze()) {
      try {
        cg.freeze(true, 5000);
        return;
      } catch (IOException e) {
        throw new VmException("cannot freeze the sandbox: " + e.getMessage(), e);
      }
    }
    OptionalLong init = Procfs.namespaceInit(handle.pid());
    if (init.isEmpty()) throw new VmException("cannot find the sandbox's init to stop its processes");
    stoppedBySignal = true;
    // Without a freezer the tree moves while we stop it (short-lived children come and go):
    // stop parents first and go round until every process left is stopped.
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (true) {
      List<Long> running = Procfs.tree(init.getAsLong()).stream()
          .filter(pid -> Procfs.stat(pid).map(st -> st.state() != 'T' && st.state() != 't' && st.state() != 'Z' && st.state() != 'X').orElse(false))
          .toList();
      if (running.isEmpty()) return;
      if (System.nanoTime() > deadline) throw new VmException("cannot stop the sandbox's processes: still running " + running);
      Procfs.kill("STOP", running); // a pid gone meanwhile fails harmlessly
      try {
        Thread.sleep(1);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new VmException("interrupted while stopping the sandbox's processes");
      }
    }
  }

  @Override
  public void resume() throws VmException {
    if (!running()) throw new VmException("the VM is not running");
    Cgroups.Sandbox cg = cgroups;
    if (cg != null && cg.canFreeze()) {
      try {
        cg.freeze(false, 5000);
        return;
      } catch (IOException e) {
        throw new VmException("cannot thaw the sandbox: " + e.getMessage(), e);
      }
    }
    OptionalLong init = Procfs.namespaceInit(handle.pid());
    if (init.isEmpty()) throw new VmException("cannot find the sandbox's init to continue its processes");
    Procfs.kill("CONT", Procfs.tree(init.getAsLong())); // a pid gone meanwhile fails harmlessly
    stoppedBySignal = false;
  }

  private void thawQuietly() {
    Cgroups.Sandbox cg = cgroups;
    try {
      if (cg != null && cg.isFrozen()) cg.freeze(false, 2000);
    } catch (IOException e) {
      log.warn("sandbox {}: cannot thaw before stopping: {}", handle.sandboxId(), e.getMessage());
    }
    if (stoppedBySignal) {
      Procfs.namespaceInit(handle.pid()).ifPresent(init -> Procfs.kill("CONT", Procfs.tree(init)));
    }
  }

  @Override
  public void stop(Duration grace) {
    if (!running()) return;
    requested = true;
    thawQuietly();
    OptionalLong init = Procfs.namespaceInit(handle.pid());
    if (init.isPresent()) {
      // Not unshare itself: its death would SIGKILL the namespace at once, with no grace.
      for (long pid : Procfs.tree(init.getAsLong())) ProcessHandle.of(pid).ifPresent(ProcessHandle::destroy);
      try {
        exit.get(grace.toMillis(), TimeUnit.MILLISECONDS);
        return;
      } catch (TimeoutException e) {
        log.info("sandbox {} did not stop within {} ms; killing it", handle.sandboxId(), grace.toMillis());
      } catch (Exception e) {
        Thread.currentThread().interrupt();
      }
    }
    killAndWait();
  }

  private void killAndWait() {
    kill();
    try {
      exit.get(10, TimeUnit.SECONDS);
    } catch (TimeoutException e) {
      log.error("sandbox {} (pid {}) did not die within 10 s of SIGKILL", handle.sandboxId(), handle.pid());
    } catch (Exception e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void kill() {
    if (handle.pid() <= 0 || exit.isDone()) return;
    requested = true;
    long pid = handle.pid();
    if (!Procfs.isSameProcess(pid, handle.startTime())) return;
    Set<Long> victims = new LinkedHashSet<>();
    // PID 1 of the namespace first: its death takes every process in the namespace with it.
    Procfs.namespaceInit(pid).ifPresent(victims::add);
    victims.add(pid);
    Cgroups.Sandbox cg = cgroups;
    if (cg != null) victims.addAll(cg.pids());
    for (long v : victims) ProcessHandle.of(v).ifPresent(ProcessHandle::destroyForcibly);
    // Frozen tasks (cgroup v1) die only once thawed; stopped ones die at once.
    thawQuietly();
  }

  @Override
  public CompletableFuture<VmExit> exitFuture() {
    return exit;
  }

  @Override
  public List<Long> pids() {
    if (!running()) return List.of();
    Cgroups.Sandbox cg = cgroups;
    List<Long> fromCgroup = cg == null ? List.of() : cg.pids();
    if (!fromCgroup.isEmpty()) return fromCgroup;
    return Procfs.tree(handle.pid());
  }

  @Override
  public void destroy() {
    if (running()) {
      log.warn("not destroying sandbox {}: it still runs (pid {})", handle.sandboxId(), handle.pid());
      return;
    }
    removeCgroups();
    Path dir = handle.stateDir();
    if (!Files.exists(dir)) return;
    try {
      NodeOnlyFiles.deleteTree(dir); // the sandbox's root can write in it: never follow its links
    } catch (IOException e) {
      log.warn("cannot delete state directory {}: {}", dir, e.getMessage());
    }
  }

  private static void awaitQuietly(Process p) {
    try {
      p.waitFor(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  static String logTail(Path logFile) {
    try (RandomAccessFile f = new RandomAccessFile(logFile.toFile(), "r")) {
      long len = f.length();
      long from = Math.max(0, len - 2048);
      byte[] buf = new byte[(int) (len - from)];
      f.seek(from);
      f.readFully(buf);
      return new String(buf, StandardCharsets.UTF_8).strip();
    } catch (IOException e) {
      return "(no log: " + e.getMessage() + ")";
    }
  }
}
