package dev.flotilla.vm.process;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.vm.AgentSecrets;
import dev.flotilla.vm.ImageRootfs;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.Snapshot;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.oci.BundleConfig;
import dev.flotilla.vm.oci.OciRuntime;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One sandbox incarnation of the process driver: an OCI container run by runc in the foreground
 * ({@code setsid runc run}, the handle's pid), whose init is tini running the guest agent from the
 * read-only runtime at {@code /.fl}. runc exits with the container's init, so the exit status is
 * exact while this JVM is its parent; an adopted one is watched by pid.
 *
 * <p>Where things live. Node-only (state dir, 0700): the bundle's config.json, the handle. The
 * sandbox's writable layer holds the agent's log (so the sandbox can only fill its own disk). The
 * run root (traversable, not listable) holds the mount point of the sandbox's root and a small
 * tmpfs of the node's ({@code agent/}, capped: what the sandbox writes there must not reach the host's
 * disk or /run) with the agent directory {@code agent/run/}, the only host directory the sandbox can
 * write: its agent socket lives there. The node never connects through that path (the sandbox can swap it for a link to any host
 * socket, and connect(2) follows links): once the agent has bound it, the node checks that it is a
 * socket owned by the sandbox's root and hard-links it into the incarnation's node-only directory,
 * which is the address the node uses from then on.
 */
final class ProcessVm implements Vm {
  private static final Logger log = LoggerFactory.getLogger(ProcessVm.class);
  static final String AGENT_SOCKET = "agent.sock";
  static final String AGENT_LOG = "agent.log";
  static final String EXEC_DEFAULTS = "exec-defaults.properties";
  static final String IN_SANDBOX_RUNTIME = "/.fl";
  static final String IN_SANDBOX_RUN = "/.fl/run";
  /** The agent directory's tmpfs: room for a socket, not for data. */
  static final String AGENT_DIR_TMPFS = "size=1m,nr_inodes=64,mode=0711,nosuid,nodev,noexec";

  /** Watches adopted processes (not our children, so no exit notification): one cheap /proc read each tick. */
  private static final ScheduledExecutorService WATCHER = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "flotilla-process-vm-watcher");
    t.setDaemon(true);
    return t;
  });

  private final ProcessHypervisor hv;
  private final VmSpec spec; // null when adopted
  private final Places places;
  private final CompletableFuture<VmExit> exit = new CompletableFuture<>();
  private volatile VmHandle handle;
  private volatile byte[] agentSecret; // node-only; read back from the state dir on adopt
  private volatile Process process;
  private volatile boolean requested;
  private volatile SandboxNetwork network; // egress only

  /**
   * Every path of one incarnation, derived from the driver's configuration, the sandbox id and the
   * incarnation only: never read from a handle or anything else a sandbox could have written.
   */
  record Places(Path stateDir, Path incDir, Path rootfs, Path agentDir, Path runDir, WritableLayer layer, String containerId) {
    static Places of(ProcessHypervisorConfig c, String sandboxId, long incarnation) {
      Path inc = c.runRoot().resolve(sandboxId + "-" + incarnation);
      Path agent = inc.resolve("agent");
      return new Places(c.stateDirFor(sandboxId, incarnation), inc, inc.resolve("rootfs"), agent, agent.resolve("run"),
          layerOf(c, sandboxId), "fl-" + sandboxId + "-" + incarnation);
    }

    static WritableLayer layerOf(ProcessHypervisorConfig c, String sandboxId) {
      return new WritableLayer(c.stateRoot().resolve(sandboxId + ".disk"), c.runRoot().resolve(sandboxId + ".disk"));
    }

    /** Where the agent binds its socket: in the sandbox-writable run directory. */
    Path agentSocket() {
      return runDir.resolve(AGENT_SOCKET);
    }

    /** The node's own name for that socket (a hard link, on the same tmpfs, in a directory only the node writes). */
    Path nodeSocket() {
      return agentDir.resolve(AGENT_SOCKET);
    }

    Path agentLog() {
      return layer.mountPoint().resolve(AGENT_LOG);
    }
  }

  private ProcessVm(ProcessHypervisor hv, VmSpec spec, VmHandle handle, Places places) {
    this.hv = hv;
    this.spec = spec;
    this.handle = handle;
    this.places = places;
  }

  static ProcessVm prepared(ProcessHypervisor hv, VmSpec spec, long hostIdStart) {
    Places pl = Places.of(hv.config(), spec.sandboxId(), spec.incarnation());
    VmHandle h = new VmHandle(ProcessHypervisor.DRIVER, spec.sandboxId(), spec.incarnation(), 0, 0, pl.stateDir(),
        pl.nodeSocket(), Map.of("container", pl.containerId(), "idBase", Long.toString(hostIdStart)));
    return new ProcessVm(hv, spec, h, pl);
  }

  static ProcessVm adopted(ProcessHypervisor hv, VmHandle handle) {
    ProcessVm vm = new ProcessVm(hv, null, handle, Places.of(hv.config(), handle.sandboxId(), handle.incarnation()));
    vm.agentSecret = AgentSecrets.readIfTrusted(vm.places.stateDir());
    SandboxNetwork.load(hv.networks(), vm.places, handle.sandboxId()).ifPresent(vm::reattachNetwork);
    vm.watchAdopted();
    return vm;
  }

  /**
   * An adopted sandbox keeps its pasta if the one recorded still runs, or gets a new one; its
   * rules are applied again either way (deny-list names resolved afresh, a new DNS proxy and the
   * redirect to it). If they cannot be, it keeps no pasta: no network rather than an unchecked one.
   */
  private void reattachNetwork(SandboxNetwork n) {
    network = n;
    try {
      n.applyRules();
    } catch (IOException | RuntimeException e) {
      log.error("sandbox {}: cannot apply its egress rules on adoption; it keeps no network: {}", handle.sandboxId(), e.getMessage());
      n.killPasta();
      return;
    }
    if (!n.pastaAlive()) {
      try {
        long init = hv.oci().state(places.containerId()).map(OciRuntime.State::pid).orElse(0L);
        if (init <= 0) throw new IOException("no init pid for container " + places.containerId());
        n.attach(init, Duration.ofSeconds(10));
        log.info("sandbox {}: its pasta was gone; attached a new one (pid {})", handle.sandboxId(), n.pastaPid());
      } catch (IOException | RuntimeException e) {
        log.error("sandbox {}: cannot attach pasta on adoption; it has no network: {}", handle.sandboxId(), e.getMessage());
        n.killPasta();
      }
    }
    hv.networks().register(n);
  }

  @Override
  public VmHandle handle() {
    return handle;
  }

  @Override
  public AgentAddress agentAddress() {
    // The node's own link to the socket (checked at start), the sandbox's uid as its holder
    // (SO_PEERCRED at every connect), and this incarnation's secret.
    return new AgentAddress(places.nodeSocket(), OptionalLong.of(hostIdStart()), agentSecret);
  }

  Places places() {
    return places;
  }

  long hostIdStart() {
    return Long.parseLong(handle.extra().getOrDefault("idBase", "0"));
  }

  @Override
  public synchronized void start(Duration deadline) throws VmException {
    if (spec == null || process != null) throw new VmException("VM " + handle.sandboxId() + " was already started");
    long until = System.nanoTime() + deadline.toNanos();
    long idBase = hostIdStart();
    ProcessHypervisorConfig c = hv.config();
    ImageRootfs.Rootfs image = hv.rootfs(spec); // may pull or unpack: before anything is mounted
    EgressPolicy policy = ProcessHypervisor.policy(spec);
    try {
      places.layer().ensureMounted(diskMiB(spec, c));
      NodeDirs.privateDir(places.incDir(), "rwx--x--x");
      places.layer().mountRoot(image.layersTopFirst(), places.rootfs(), idBase);
      Files.createDirectories(places.agentDir());
      if (!Mounts.isMountPoint(places.agentDir())) {
        Mounts.run("mount", "-t", "tmpfs", "-o", AGENT_DIR_TMPFS, "flotilla-agent", places.agentDir().toString());
      }
      NodeDirs.freshDir(places.runDir(), idBase);
      writeExecDefaults(image);
      List<BundleConfig.Mount> mounts = new ArrayList<>(List.of(BundleConfig.Mount.readOnlyBind(hv.runtimeMount(), IN_SANDBOX_RUNTIME),
          BundleConfig.Mount.writableBind(places.runDir(), IN_SANDBOX_RUN)));
      if (policy.egress()) {
        // the rules before anything can send: pasta comes once the container exists
        network = new SandboxNetwork(hv.networks(), places, spec.sandboxId(), idBase, policy);
        network.prepare();
        mounts.add(BundleConfig.Mount.readOnlyBind(network.resolvConf(), "/etc/resolv.conf"));
      }
      // The node's copy stays node-only; the agent reads its copy at start and deletes it.
      agentSecret = AgentSecrets.create(places.stateDir());
      AgentSecrets.writeHandoff(places.runDir(), agentSecret, idBase);
      new BundleConfig(agentCommand(), agentEnv(), "/", places.rootfs(), hostname(spec.sandboxId()), idBase, 65536,
          mounts,
          "/" + c.cgroupParent() + "/" + places.containerId(),
          spec.memoryMiB() * 1024L * 1024L, spec.vcpus(), spec.pidsLimit() > 0 ? spec.pidsLimit() : c.defaultPidsLimit(),
          hv.seccomp()).write(places.stateDir());
    } catch (IOException | RuntimeException e) {
      closeNetwork();
      cleanUpMounts();
      throw new VmException("cannot prepare sandbox " + spec.sandboxId() + ": " + e.getMessage(), e);
    }
    List<String> cmd = new ArrayList<>(List.of("setsid"));
    cmd.addAll(hv.oci().runCommand(places.stateDir(), places.containerId()));
    ProcessBuilder pb = new ProcessBuilder(cmd)
        .directory(places.stateDir().toFile())
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(places.agentLog().toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    pb.environment().clear();
    pb.environment().put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    try {
      hv.gate().through(spec.sandboxId(), () -> spawn(pb, c));
    } catch (VmException e) {
      if (process == null) {
        closeNetwork();
        cleanUpMounts();
      }
      throw e;
    }
    Path socket = places.agentSocket();
    while (!Files.exists(socket, LinkOption.NOFOLLOW_LINKS)) {
      if (exit.isDone()) {
        throw new VmException("the sandbox exited during start (" + exit.join().reason() + "); log: " + logTail());
      }
      if (System.nanoTime() > until) {
        killAndWait();
        throw new VmException("the guest agent did not open its socket within " + deadline.toMillis() + " ms; log: " + logTail());
      }
      try {
        Thread.sleep(3);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        killAndWait();
        throw new VmException("interrupted while starting the sandbox");
      }
    }
    try {
      linkAgentSocket(idBase);
    } catch (IOException e) {
      killAndWait();
      throw new VmException("the sandbox's agent socket is not usable: " + e.getMessage(), e);
    }
    if (network != null) {
      // No tenant code has run yet: the agent runs it once the node asks, after start returns.
      try {
        long init = hv.oci().state(places.containerId()).map(OciRuntime.State::pid).orElse(0L);
        if (init <= 0) throw new IOException("runc reports no init pid for " + places.containerId());
        network.attach(init, Duration.ofNanos(Math.max(until - System.nanoTime(), Duration.ofSeconds(2).toNanos())));
        hv.networks().register(network);
      } catch (IOException | RuntimeException e) {
        killAndWait();
        throw new VmException("cannot attach the sandbox's egress network: " + e.getMessage(), e);
      }
    }
  }

  /** runc started and its handle saved, inside the driver's {@link dev.flotilla.vm.SpawnGate}. */
  private Void spawn(ProcessBuilder pb, ProcessHypervisorConfig c) throws VmException {
    Process p;
    try {
      p = pb.start();
    } catch (IOException e) {
      throw new VmException("cannot run " + c.ociRuntime() + ": " + e.getMessage(), e);
    }
    process = p;
    handle = handle.withProcess(p.pid(), Procfs.startTime(p.pid()).orElse(0));
    p.onExit().thenAcceptAsync(done -> exited(done.exitValue()));
    try {
      handle.save();
    } catch (IOException e) {
      killAndWait();
      throw new VmException("cannot save the VM handle in " + places.stateDir() + ": " + e.getMessage(), e);
    }
    return null;
  }

  /** pasta killed, then its rules removed: on every way a sandbox ends. */
  private void closeNetwork() {
    SandboxNetwork n = network;
    if (n != null) n.close();
  }

  SandboxNetwork network() {
    return network;
  }

  /**
   * Hard-links the socket the agent bound into the node-only incarnation directory, after checking
   * that what was linked is a socket owned by the sandbox's root. No tenant code has run yet (the
   * agent runs it, once the node asked), so the socket is the agent's; link(2) does not follow a
   * symbolic link, and the check is made on the node's own link, which the sandbox cannot swap.
   */
  private void linkAgentSocket(long idBase) throws IOException {
    Path link = places.nodeSocket();
    Files.deleteIfExists(link);
    Files.createLink(link, places.agentSocket());
    int mode = (Integer) Files.getAttribute(link, "unix:mode", LinkOption.NOFOLLOW_LINKS);
    int uid = (Integer) Files.getAttribute(link, "unix:uid", LinkOption.NOFOLLOW_LINKS);
    if ((mode & 0170000) != 0140000 || Integer.toUnsignedLong(uid) != idBase) {
      Files.deleteIfExists(link);
      throw new IOException(places.agentSocket() + " is not a socket owned by the sandbox's root (mode "
          + Integer.toOctalString(mode) + ", uid " + Integer.toUnsignedLong(uid) + ")");
    }
  }

  private static int diskMiB(VmSpec spec, ProcessHypervisorConfig c) {
    String v = spec.options().get(VmSpec.DISK_MIB);
    return v == null ? c.defaultDiskMiB() : Integer.parseInt(v);
  }

  /**
   * The image's Env, WorkingDir and User for the agent, read once at its start, before any tenant
   * process runs (written by the node into the fresh agent directory).
   */
  private void writeExecDefaults(ImageRootfs.Rootfs image) throws IOException {
    Files.writeString(places.runDir().resolve(EXEC_DEFAULTS), image.execDefaults(), java.nio.charset.StandardCharsets.UTF_8,
        java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE);
  }

  private List<String> agentCommand() {
    List<String> cmd = new ArrayList<>(List.of(IN_SANDBOX_RUNTIME + "/bin/tini", "-s", "--", IN_SANDBOX_RUNTIME + "/jre/bin/java"));
    cmd.addAll(hv.config().jvmFlags());
    cmd.addAll(classArchiveFlags(hv.config().runtimeDir()));
    cmd.addAll(List.of("-jar", IN_SANDBOX_RUNTIME + "/agent.jar",
        "--listen", "unix:" + IN_SANDBOX_RUN + "/" + AGENT_SOCKET,
        "--sandbox-id", spec.sandboxId(),
        "--incarnation", Long.toString(spec.incarnation()),
        "--exec-defaults", IN_SANDBOX_RUN + "/" + EXEC_DEFAULTS,
        "--secret-file", IN_SANDBOX_RUN + "/" + AgentSecrets.HANDOFF_FILE_NAME,
        "--setpriv", IN_SANDBOX_RUNTIME + "/bin/setpriv"));
    String lease = spec.options().get(VmSpec.AGENT_LEASE_MS);
    if (lease != null && !lease.equals("0")) cmd.addAll(List.of("--lease-ms", lease));
    return cmd;
  }

  /**
   * The runtime's class archive (build-sandbox-runtime.sh makes one of the two, for the paths under
   * /.fl): a JDK 25 AOT cache, or a JDK 17 CDS archive. Both are taken in the JVM's auto mode, so an
   * archive that does not fit starts the agent slower, never not at all (ClassDataArchiveTest checks
   * that the one built is used).
   */
  static List<String> classArchiveFlags(Path runtimeDir) {
    if (Files.isRegularFile(runtimeDir.resolve("agent.aot"))) return List.of("-XX:AOTCache=" + IN_SANDBOX_RUNTIME + "/agent.aot");
    if (Files.isRegularFile(runtimeDir.resolve("agent.jsa"))) return List.of("-XX:SharedArchiveFile=" + IN_SANDBOX_RUNTIME + "/agent.jsa");
    return List.of();
  }

  /** The agent's own environment; the processes it starts get a clean one of their own. */
  private static List<String> agentEnv() {
    return List.of("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
        "LD_LIBRARY_PATH=" + IN_SANDBOX_RUNTIME + "/lib");
  }

  static String hostname(String sandboxId) {
    String h = ("fl-" + sandboxId).toLowerCase().replaceAll("[^a-z0-9-]", "-");
    return h.length() > 63 ? h.substring(0, 63) : h;
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
  }

  /** @param code runc's exit value (the container init's status), null when unknown (an adopted VM) */
  private void exited(Integer code) {
    if (exit.isDone()) return;
    VmExit e;
    if (code == null) {
      // Not our child, so no status. The agent's log is the sandbox's to write: it decides nothing.
      e = new VmExit(-1, 0, requested ? "stopped" : "exited (status unknown: the VM was adopted, not our child)", requested);
    } else if (code == VmExit.AGENT_LEASE_EXPIRED) {
      e = VmExit.agentLeaseExpired(requested);
    } else if (code > 128 && code <= 128 + 64) {
      int sig = code - 128;
      e = new VmExit(-1, sig, "killed by signal " + sig + " (" + Procfs.signalName(sig) + ")", requested);
    } else {
      e = new VmExit(code, 0, requested && code == 0 ? "stopped" : "exited with " + code, requested);
    }
    closeNetwork();
    // runc removes a container whose init it saw exit; one whose runc died leaves it behind.
    deleteContainerQuietly();
    exit.complete(e);
  }

  private void deleteContainerQuietly() {
    // runc keeps a container's state in <root>/<id>/ and removes it when it saw the init exit. Asked to
    // delete one it no longer has, it would still create its root: a state root removed meanwhile (a
    // test's, after its VMs were killed) came back as an empty .runc from this late exit callback.
    if (!Files.isDirectory(hv.config().stateRoot().resolve(".runc").resolve(places.containerId()), LinkOption.NOFOLLOW_LINKS)) return;
    try {
      hv.oci().delete(places.containerId());
    } catch (IOException | RuntimeException ex) {
      log.warn("sandbox {}: cannot delete container {}: {}", handle.sandboxId(), places.containerId(), ex.getMessage());
    }
  }

  private boolean running() {
    return handle.pid() > 0 && !exit.isDone();
  }

  /**
   * The container's cgroup limits change in place ({@code runc update}), its processes run on.
   * Memory below what the sandbox uses is refused, saying how much that is: the kernel would
   * otherwise either refuse it after a reclaim that stalls the sandbox (cgroup v1, no swap) or
   * OOM-kill its processes (v2), and a resize must never end what runs inside. Page cache does not
   * count: the kernel drops it to fit. Works on a paused sandbox as well.
   */
  @Override
  public void resize(int vcpus, int memoryMiB) throws VmException {
    if (!running()) throw new VmException("the sandbox is not running");
    long bytes = memoryMiB * 1024L * 1024L;
    String id = places.containerId();
    try {
      OciRuntime.MemoryUse use = hv.oci().memoryUse(id);
      if (bytes < use.workingSetBytes()) throw belowUse(memoryMiB, use.workingSetBytes());
      hv.oci().update(id, bytes, vcpus * BundleConfig.CPU_PERIOD_US, BundleConfig.CPU_PERIOD_US);
    } catch (IOException e) {
      // cgroup v1 answers EBUSY when reclaim cannot get under the new limit (runc says "unable to set memory limit")
      if (String.valueOf(e.getMessage()).contains("unable to set memory limit")) {
        long used = 0;
        try {
          used = hv.oci().memoryUse(id).workingSetBytes();
        } catch (IOException ignored) {
          // the refusal stands without the figure
        }
        throw belowUse(memoryMiB, used);
      }
      throw new VmException("cannot resize the sandbox: " + e.getMessage(), e);
    }
  }

  private static VmException belowUse(int memoryMiB, long usedBytes) {
    return new VmException("the sandbox uses " + ((usedBytes + (1 << 20) - 1) >> 20) + " MiB (page cache not counted), more than "
        + memoryMiB + " MiB: memory is not shrunk below what it uses (that would kill its processes); free memory inside it first, "
        + "or ask for at least that much");
  }

  @Override
  public void pause() throws VmException {
    if (!running()) throw new VmException("the VM is not running");
    try {
      hv.oci().pause(places.containerId());
    } catch (IOException e) {
      if (e.getMessage().contains("paused")) return;
      throw new VmException("cannot pause the sandbox: " + e.getMessage(), e);
    }
  }

  @Override
  public void resume() throws VmException {
    if (!running()) throw new VmException("the VM is not running");
    try {
      hv.oci().resume(places.containerId());
    } catch (IOException e) {
      if (e.getMessage().contains("not paused")) return;
      throw new VmException("cannot resume the sandbox: " + e.getMessage(), e);
    }
  }

  @Override
  public boolean isPaused() throws VmException {
    if (!running()) return false;
    try {
      return hv.oci().state(places.containerId()).map(st -> st.status().equals("paused")).orElse(false);
    } catch (IOException e) {
      throw new VmException("cannot read the sandbox's state: " + e.getMessage(), e);
    }
  }

  /** How long a suspend waits for the sandbox to end on SIGTERM before it kills it. */
  static final Duration SUSPEND_GRACE = Duration.ofSeconds(5);

  /**
   * Keeps the sandbox's writable layer in {@code dir} (see {@link ProcessSnapshots} for the layout)
   * and ends the sandbox: CRIU cannot checkpoint here, so its processes and memory are lost
   * ({@link Snapshot#memory()} false) and its restore boots afresh on the saved layer. The container
   * is stopped as {@link #stop} does (SIGTERM, a kill after {@link #SUSPEND_GRACE}), the
   * incarnation's mounts released, the layer unmounted (so that its copy is consistent) and copied
   * sparsely. The layer stays on this node, mounted again by the next incarnation here.
   *
   * @throws VmException if it cannot, with no directory left; once the sandbox was stopped the
   *     message says so (its layer is then intact on this node)
   */
  @Override
  public Snapshot suspend(Path dir) throws VmException {
    long t0 = System.nanoTime();
    String id = handle.sandboxId();
    if (!running()) throw new VmException("cannot suspend sandbox " + id + ": it is not running");
    Path d = dir.toAbsolutePath().normalize();
    try {
      ProcessSnapshots.createDir(d);
    } catch (IOException e) {
      throw new VmException("cannot suspend sandbox " + id + ": " + e.getMessage(), e);
    }
    boolean done = false;
    long stopped = System.nanoTime();
    long createdAt = System.currentTimeMillis();
    try {
      stop(SUSPEND_GRACE);
      if (!exit.isDone()) throw new IOException("its container did not exit");
      cleanUpMounts();
      WritableLayer layer = places.layer();
      try {
        layer.unmountNow();
      } catch (IOException e) {
        throw new IOException("cannot unmount its writable layer (a root of it still mounted?): " + e.getMessage(), e);
      }
      layer.requireDetached();
      Path disk = d.resolve(ProcessSnapshots.DISK);
      Ext4Disk.copySparse(layer.image(), disk);
      Files.setPosixFilePermissions(disk, NodeOnlyFiles.FILE_MODE);
      try (FileChannel ch = FileChannel.open(disk, StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS)) {
        ch.force(true); // on the disk before the metadata says the snapshot is whole
      }
      long diskBytes = Files.size(disk);
      long allocated = Ext4Disk.allocatedBytes(disk);
      ProcessSnapshots.write(d, new ProcessSnapshots.Meta(id, handle.incarnation(), (int) (diskBytes >> 20), diskBytes, allocated,
          createdAt));
      long paused = (System.nanoTime() - stopped) / 1_000_000;
      long elapsed = (System.nanoTime() - t0) / 1_000_000;
      done = true;
      log.info("suspend of sandbox {} incarnation {} into {}: its writable layer ({} KiB allocated), no memory; stopped {} ms, {} ms in all",
          id, handle.incarnation(), d, allocated >> 10, paused, elapsed);
      return new Snapshot(d, 0, diskBytes, allocated, elapsed, paused, false);
    } catch (IOException | RuntimeException e) {
      throw new VmException("cannot suspend sandbox " + id + " into " + d + ": " + e.getMessage()
          + (exit.isDone() ? " (the sandbox has stopped; its writable layer stays on this node)" : ""), e);
    } finally {
      if (!done) NodeDirs.deleteTree(d);
    }
  }

  @Override
  public void stop(Duration grace) {
    if (!running()) return;
    requested = true;
    try {
      thawQuietly();
      // The init (tini) passes SIGTERM to the agent, which ends its processes and exits.
      hv.oci().kill(places.containerId(), "TERM");
      exit.get(grace.toMillis(), TimeUnit.MILLISECONDS);
      return;
    } catch (TimeoutException e) {
      log.info("sandbox {} did not stop within {} ms; killing it", handle.sandboxId(), grace.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (Exception e) {
      log.info("sandbox {}: polite stop failed ({}); killing it", handle.sandboxId(), e.getMessage());
    }
    killAndWait();
  }

  private void thawQuietly() {
    try {
      if (isPaused()) hv.oci().resume(places.containerId());
    } catch (IOException | VmException e) {
      log.warn("sandbox {}: cannot thaw before stopping: {}", handle.sandboxId(), e.getMessage());
    }
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
    try {
      hv.oci().kill(places.containerId(), "KILL");
      thawQuietly(); // frozen tasks (cgroup v1) die only once thawed
    } catch (IOException e) {
      log.warn("sandbox {}: runc kill failed: {}", handle.sandboxId(), e.getMessage());
    }
    if (Procfs.isSameProcess(handle.pid(), handle.startTime())) {
      ProcessHandle.of(handle.pid()).ifPresent(ProcessHandle::destroyForcibly);
    }
  }

  @Override
  public CompletableFuture<VmExit> exitFuture() {
    return exit;
  }

  @Override
  public List<Long> pids() {
    if (!running()) return List.of();
    return hv.containerPids(places.containerId());
  }

  @Override
  public void destroy() {
    if (running()) {
      log.warn("not destroying sandbox {}: it still runs (pid {})", handle.sandboxId(), handle.pid());
      return;
    }
    deleteContainerQuietly();
    cleanUpMounts();
    NodeDirs.deleteTree(places.incDir());
    NodeDirs.deleteTree(places.stateDir());
  }

  /** Unmounts the incarnation's root and agent tmpfs (the writable layer stays mounted for the next incarnation). */
  void cleanUpMounts() {
    for (Path mp : Mounts.mountPointsUnder(places.incDir())) {
      try {
        Mounts.unmount(mp);
      } catch (IOException e) {
        log.warn("sandbox {}: cannot unmount {}: {}", handle.sandboxId(), mp, e.getMessage());
      }
    }
  }

  /** The end of the agent's log, for error messages (never parsed for decisions). */
  String logTail() {
    Path f = places.agentLog();
    try (var raf = new java.io.RandomAccessFile(f.toFile(), "r")) {
      long len = raf.length();
      long from = Math.max(0, len - 2048);
      byte[] buf = new byte[(int) (len - from)];
      raf.seek(from);
      raf.readFully(buf);
      return new String(buf, java.nio.charset.StandardCharsets.UTF_8).strip();
    } catch (IOException e) {
      return "(no log: " + e.getMessage() + ")";
    }
  }

  /** Reaps what is left of an incarnation no node wants: its container, runc, mounts and state. */
  static void reap(ProcessHypervisor hv, String sandboxId, long incarnation, VmHandle handle) {
    Places pl = Places.of(hv.config(), sandboxId, incarnation);
    try {
      hv.oci().delete(pl.containerId());
    } catch (IOException e) {
      log.warn("sandbox {}: cannot delete container {}: {}", sandboxId, pl.containerId(), e.getMessage());
    }
    if (handle != null && handle.pid() > 0 && Procfs.isSameProcess(handle.pid(), handle.startTime())
        && Procfs.commandName(handle.pid()).map(n -> n.equals("runc") || n.equals("setsid")).orElse(false)) {
      ProcessHandle.of(handle.pid()).ifPresent(ProcessHandle::destroyForcibly);
    }
    SandboxNetwork.load(hv.networks(), pl, sandboxId).ifPresent(SandboxNetwork::close);
    ProcessVm view = new ProcessVm(hv, null, handle, pl);
    view.exit.complete(new VmExit(-1, 0, "reaped", true));
    view.cleanUpMounts();
    NodeDirs.deleteTree(pl.incDir());
    NodeDirs.deleteTree(pl.stateDir());
  }
}
