package dev.flotilla.vm.qemu;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.Snapshot;
import dev.flotilla.vm.SpawnGate;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.process.Cgroups;
import java.io.IOException;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.FileChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One QEMU process, jailed ({@link QemuJail}) and in its own cgroups. It runs in its own session
 * ({@code setsid}), stdio to {@code qemu.log}, so it outlives the node JVM and a terminal's
 * signals; a later node adopts it by pid + start time. QEMU is not daemonized: while this JVM is
 * its parent the exit code and signal are exact; an adopted QEMU's exit is seen by polling its pid
 * (code unknown).
 */
final class QemuVm implements Vm {

  private static final Logger LOG = LoggerFactory.getLogger(QemuVm.class);
  private static final Duration QMP_TIMEOUT = Duration.ofSeconds(5);
  /** How long an exit waits for the console's last lines (the agent's, the kernel's panic) to be read. */
  private static final long CONSOLE_DRAIN_MILLIS = 3000;

  /** The cgroup limits of one QEMU; {@code required} are those it must not start without. */
  record Limits(Cgroups.Layout layout, long memoryBytes, int cpus, int threads, Set<String> required) {}

  private final List<String> command;
  private final List<String> launch;
  private final Limits limits;
  /** The egress network (passt and the host's rules), null for network none. */
  private final QemuNetwork network;
  /** The saved state this VM starts from (a template's or a snapshot's), null for a cold boot. */
  private final Path incoming;
  /** Whether {@link #incoming} was saved with {@code x-ignore-shared} (a template's: its RAM is the memory file). */
  private final boolean incomingIgnoresShared;
  private final CompletableFuture<VmExit> exit = new CompletableFuture<>();
  private final Object qmpLock = new Object();
  private volatile VmHandle handle;
  private volatile ProcessHandle process;
  /** Null for a VM that was adopted or is gone: it never spawns. */
  private final SpawnGate gate;
  private volatile Cgroups.Sandbox cgroups;
  private volatile ConsoleLog console;
  private volatile boolean requested;
  private volatile boolean started;

  /** A VM to start: QEMU's own argv (jail paths) and the full command that jails and runs it. */
  QemuVm(VmHandle handle, List<String> command, List<String> launch, Limits limits, SpawnGate gate) {
    this(handle, command, launch, limits, gate, null);
  }

  /** As above, with its egress network (null: none). */
  QemuVm(VmHandle handle, List<String> command, List<String> launch, Limits limits, SpawnGate gate, QemuNetwork network) {
    this(handle, command, launch, limits, gate, network, null);
  }

  /**
   * As above, started from {@code incoming}, a saved VM state that the node streams into QEMU (run
   * with {@code -incoming defer}) once it answers QMP; null: a cold boot.
   */
  QemuVm(VmHandle handle, List<String> command, List<String> launch, Limits limits, SpawnGate gate, QemuNetwork network,
      Path incoming) {
    this(handle, command, launch, limits, gate, network, incoming, true);
  }

  /**
   * As above; {@code ignoreShared}: the state was saved with {@code x-ignore-shared} (a template's),
   * else it holds all of the guest's RAM (a snapshot's).
   */
  QemuVm(VmHandle handle, List<String> command, List<String> launch, Limits limits, SpawnGate gate, QemuNetwork network,
      Path incoming, boolean ignoreShared) {
    this.incoming = incoming;
    this.incomingIgnoresShared = ignoreShared;
    this.handle = handle;
    this.gate = gate;
    this.command = List.copyOf(command);
    this.launch = List.copyOf(launch);
    this.limits = limits;
    this.network = network;
  }

  /** A running VM found through its handle (already checked: same pid and start time), with the network it records (null: none). */
  QemuVm(VmHandle handle, QemuNetwork network) {
    this.handle = handle;
    this.gate = null;
    this.command = List.of();
    this.launch = List.of();
    this.limits = null;
    this.network = network;
    this.incoming = null;
    this.incomingIgnoresShared = false;
    this.started = true;
    this.cgroups = Cgroups.Sandbox.fromExtras(handle.extra());
    ProcessHandle.of(handle.pid()).ifPresentOrElse(ph -> {
      // its rules and a DNS proxy of this node before anything else (the guest may be using its network)
      if (network != null) network.adopted();
      connectConsole();
      watch(ph);
    }, () -> exit.complete(new VmExit(-1, 0, "exited before it was adopted", false)));
  }

  /** What is left of a VM whose QEMU is gone: its cgroups and directory, for {@link QemuHypervisor#reap}. */
  static QemuVm gone(VmHandle handle, QemuNetwork network) {
    QemuVm vm = new QemuVm(handle, List.of(), List.of(), null, null, network);
    vm.started = true;
    vm.cgroups = Cgroups.Sandbox.fromExtras(handle.extra());
    vm.exit.complete(new VmExit(-1, 0, "gone before it was reaped", true));
    return vm;
  }

  /** The QEMU command line (as it runs inside the jail, without the wrapper), for benchmarks and logs. */
  List<String> command() {
    return command;
  }

  /** The full command the node spawns: wrapper, namespaces, jail, setpriv, QEMU. */
  List<String> launch() {
    return launch;
  }

  @Override
  public VmHandle handle() {
    return handle;
  }

  @Override
  public void start(Duration deadline) throws VmException {
    if (started) throw new VmException("VM of " + handle.sandboxId() + " was already started");
    started = true;
    long t0 = System.nanoTime();
    long until = t0 + deadline.toNanos();
    Path dir = handle.stateDir();
    Path log = dir.resolve("qemu.log");
    try {
      Files.deleteIfExists(consoleLog());
      Files.deleteIfExists(consoleLog().resolveSibling(consoleLog().getFileName() + ".1"));
      Files.writeString(dir.resolve("qemu.cmdline"), String.join(" ", command) + "\n");
      // exact, one argument a line (the kernel's arguments hold spaces): what a snapshot of an adopted VM records
      NodeOnlyFiles.writePrivateFile(dir.resolve(ARGV_FILE), (String.join("\n", command) + "\n").getBytes(StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new VmException("cannot prepare " + dir + ": " + e.getMessage(), e);
    }
    Cgroups.Sandbox cg;
    try {
      cg = Cgroups.Sandbox.create(limits.layout(), cgroupName());
    } catch (IOException e) {
      throw new VmException("cannot create QEMU's cgroups: " + e.getMessage(), e);
    }
    cgroups = cg;
    Set<String> applied = cg.applyLimits(limits.memoryBytes(), limits.cpus(), limits.threads());
    if (!applied.containsAll(limits.required())) {
      removeCgroups();
      Set<String> missing = new java.util.TreeSet<>(limits.required());
      missing.removeAll(applied);
      throw new VmException("cannot set QEMU's " + String.join(", ", missing) + " limit in " + cg.toExtras().values());
    }
    long prepared = System.nanoTime();
    if (network != null) {
      // before QEMU, which connects to passt's socket as it sets up its devices
      try {
        network.start(Duration.ofNanos(Math.max(until - System.nanoTime(), 0)));
      } catch (IOException e) {
        removeCgroups();
        throw new VmException("cannot start the sandbox's network (passt): " + e.getMessage(), e);
      }
      handle = network.record(handle);
    }
    long networked = System.nanoTime();
    ProcessHandle ph;
    long spawned;
    long devices;
    try {
      ph = gate.through(handle.sandboxId(), () -> spawn(cg, dir, log, applied));
    } catch (VmException e) {
      if (process == null) {
        // refused by a fenced node (the spawn's own failures ended the network and removed the cgroups already)
        closeNetwork();
        removeCgroups();
      }
      throw e;
    }
    spawned = System.nanoTime();
    try {
      // The console first (QEMU waits for it before it runs the guest), then QMP answering means
      // QEMU has set up its devices, including the agent socket.
      while (true) {
        if (exit.isDone()) {
          throw new VmException("QEMU exited at start (" + exit.join().reason() + "): " + tail(log));
        }
        if (console == null) connectConsole();
        if (console != null) {
          try {
            status(QMP_TIMEOUT);
            if (Files.exists(handle.agentSocket())) break;
          } catch (VmException e) {
            if (System.nanoTime() > until) throw new VmException("QEMU did not answer QMP within " + deadline + ": " + tail(log));
          }
        }
        if (System.nanoTime() > until) {
          throw new VmException((console == null ? "QEMU did not open its console" : "no agent socket") + " within " + deadline
              + ": " + tail(log));
        }
        Thread.sleep(10);
      }
      devices = System.nanoTime();
      if (incoming != null) restore(incoming, until);
    } catch (VmException | InterruptedException e) {
      if (e instanceof InterruptedException) Thread.currentThread().interrupt();
      ph.destroyForcibly();
      awaitExit(Duration.ofSeconds(10));
      throw e instanceof VmException ve ? ve : new VmException("QEMU start failed: " + e.getMessage(), e);
    }
    long end = System.nanoTime();
    LOG.info("QEMU pid {} started for sandbox {} incarnation {} ({}, uid {}, cgroup limits {}) in {} ms (files and cgroups {}{},"
        + " spawn into the jail {}, QEMU's devices {}{} ms)", ph.pid(), handle.sandboxId(), handle.incarnation(), handle.extra().get("accel"),
        handle.extra().get("uid"), applied, ms(end - t0), ms(prepared - t0), network != null ? ", network " + ms(networked - prepared) : "",
        ms(spawned - networked), ms(devices - spawned), incoming != null ? ", state load " + ms(end - devices) : "");
  }

  private static long ms(long nanos) {
    return nanos / 1_000_000;
  }

  /** QEMU spawned, in its cgroups, its handle saved: inside the driver's {@link SpawnGate}. */
  private ProcessHandle spawn(Cgroups.Sandbox cg, Path dir, Path log, Set<String> applied) throws VmException {
    ProcessBuilder pb = new ProcessBuilder(launch)
        .directory(dir.toFile())
        .redirectInput(ProcessBuilder.Redirect.PIPE)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
        .redirectErrorStream(true);
    // QEMU gets nothing of the node's environment (credentials, JAVA_TOOL_OPTIONS, proxies).
    pb.environment().clear();
    pb.environment().put("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    pb.environment().put("LANG", "C.UTF-8");
    Process p;
    try {
      p = pb.start();
    } catch (IOException e) {
      closeNetwork();
      removeCgroups();
      throw new VmException("cannot start " + launch.get(0) + ": " + e.getMessage(), e);
    }
    ProcessHandle ph = p.toHandle();
    try {
      // The wrapper waits on stdin until it is in its cgroups: the jail's mounts and QEMU from its
      // first instruction are accounted and limited there.
      cg.join(ph.pid());
      try (OutputStream release = p.getOutputStream()) {
        release.write('\n');
      }
    } catch (IOException e) {
      ph.destroyForcibly();
      p.onExit().orTimeout(10, TimeUnit.SECONDS).exceptionally(x -> null).join();
      closeNetwork();
      removeCgroups();
      throw new VmException("cannot put QEMU in its cgroups: " + e.getMessage(), e);
    }
    OptionalLong st = HostProbe.startTime(ph.pid());
    VmHandle h = handle.withProcess(ph.pid(), st.orElse(0)).withExtra("limits", String.join(",", applied));
    for (var e : cg.toExtras().entrySet()) h = h.withExtra(e.getKey(), e.getValue());
    handle = h;
    process = ph;
    p.onExit().thenAcceptAsync(done -> {
      int code = done.exitValue();
      // Java reports a death by signal as 128 + signal
      boolean signalled = code > 128 && code < 160;
      exited(signalled ? new VmExit(-1, code - 128, "QEMU killed by signal " + (code - 128), requested) : describeExit(code));
    });
    try {
      handle.save();
    } catch (IOException e) {
      ph.destroyForcibly();
      awaitExit(Duration.ofSeconds(10));
      throw new VmException("cannot save the VM handle in " + dir + ": " + e.getMessage(), e);
    }
    return ph;
  }

  /** The run directory QEMU holds its sockets in: {@link QemuJail#RUN} inside the jail. */
  private Path runDir() {
    return handle.agentSocket().getParent();
  }

  /** In the state directory: QEMU's argv, one argument a line. */
  static final String ARGV_FILE = "qemu.argv";

  private static Map<String, Object> ignoreShared(boolean on) {
    return Map.of("capabilities", List.of(Map.of("capability", "x-ignore-shared", "state", on)));
  }

  /**
   * No bandwidth cap on a save (QEMU's default is 32 MiB/s, for live migration over a network): the
   * guest is stopped and the stream goes to a local socket.
   */
  private static final Map<String, Object> UNLIMITED = Map.of("max-bandwidth", 1L << 40);

  /**
   * Loads a saved state into a QEMU waiting with {@code -incoming defer}, then runs it. QEMU
   * listens on a socket in its run directory; the node, which alone reads the state file, connects
   * (to that socket only if QEMU's uid holds it) and streams the file in. RAM in a shared memory
   * file the state skipped ({@code x-ignore-shared}) is the template's, mapped privately by this
   * QEMU: what the guest writes stays its own.
   */
  private void restore(Path state, long until) throws VmException, InterruptedException {
    Path socket = runDir().resolve("incoming.sock");
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), QMP_TIMEOUT)) {
        q.execute("migrate-set-capabilities", ignoreShared(incomingIgnoresShared));
        q.execute("migrate-incoming", Map.of("uri", "unix:" + QemuJail.RUN + "/incoming.sock"));
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
             FileChannel in = FileChannel.open(state, StandardOpenOption.READ)) {
          ch.connect(UnixDomainSocketAddress.of(socket));
          Qmp.requirePeer(ch, qemuUid(), socket);
          // QEMU reads as fast as it loads; one that stops reading is ended by the start's deadline
          var watchdog = CompletableFuture.runAsync(() -> close(ch),
              CompletableFuture.delayedExecutor(Math.max(until - System.nanoTime(), 0), TimeUnit.NANOSECONDS));
          try {
            long size = in.size();
            for (long at = 0; at < size; ) at += in.transferTo(at, size - at, ch);
            ch.shutdownOutput();
          } finally {
            watchdog.cancel(false);
          }
        }
        String status;
        while ((status = q.status()).equals("inmigrate")) {
          if (System.nanoTime() > until) throw new VmException("QEMU did not load the saved state in time");
          Thread.sleep(2);
        }
        if (!status.equals("paused") && !status.equals("running")) {
          throw new VmException("QEMU could not load the saved state (" + status + "): " + tail(handle.stateDir().resolve("qemu.log")));
        }
        if (status.equals("paused")) q.execute("cont", null);
      } catch (IOException e) {
        throw new VmException("cannot start the VM from its saved state: " + e.getMessage() + " "
            + tail(handle.stateDir().resolve("qemu.log")), e);
      }
    }
  }

  /**
   * Stops the guest and saves its device state and the RAM outside shared memory into {@code file}
   * (node-only), over a socket the node listens on in QEMU's run directory. With the guest's RAM in
   * a shared memory file ({@code share=on}), that is a few dozen KiB: the file is the rest. The VM
   * stays stopped; the caller ends it.
   */
  void saveState(Path file, Duration timeout) throws VmException {
    saveState(file, timeout, true);
  }

  /** Beyond the guest's RAM, what a saved state may hold (device state, the stream's framing). */
  static final long STATE_MARGIN_BYTES = 64L << 20;

  /**
   * As above; {@code ignoreShared} false saves all of the guest's RAM (QEMU skips zero pages),
   * shared memory file or not: a snapshot, which needs nothing else to start again.
   */
  void saveState(Path file, Duration timeout, boolean ignoreShared) throws VmException {
    if (exit.isDone()) throw new VmException("VM of " + handle.sandboxId() + " has exited");
    long until = System.nanoTime() + timeout.toNanos();
    Path socket = runDir().resolve("migrate.sock");
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), QMP_TIMEOUT);
           ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
        Files.deleteIfExists(socket);
        server.bind(UnixDomainSocketAddress.of(socket));
        OptionalLong uid = qemuUid();
        if (uid.isPresent()) {
          // the run directory is QEMU's uid's (0700): only that uid, and root, reach the socket
          Files.setAttribute(socket, "unix:uid", (int) uid.getAsLong(), java.nio.file.LinkOption.NOFOLLOW_LINKS);
        }
        q.execute("stop", null);
        q.execute("migrate-set-capabilities", ignoreShared(ignoreShared));
        q.execute("migrate-set-parameters", UNLIMITED);
        // what a QEMU may send: its guest's RAM and a margin for device state. A QEMU the guest broke
        // into must not fill the node's disk, nor hold this thread past the deadline.
        long cap = q.bootMemoryBytes() + STATE_MARGIN_BYTES;
        q.execute("migrate", Map.of("uri", "unix:" + QemuJail.RUN + "/migrate.sock"));
        var closer = CompletableFuture.runAsync(() -> close(server),
            CompletableFuture.delayedExecutor(timeout.toNanos(), TimeUnit.NANOSECONDS));
        try (SocketChannel ch = server.accept();
             FileChannel out = FileChannel.open(file, Set.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE),
                 java.nio.file.attribute.PosixFilePermissions.asFileAttribute(NodeOnlyFiles.FILE_MODE))) {
          var watchdog = CompletableFuture.runAsync(() -> close(ch),
              CompletableFuture.delayedExecutor(Math.max(until - System.nanoTime(), 0), TimeUnit.NANOSECONDS));
          try {
            Qmp.requirePeer(ch, uid, socket);
            // a blocking channel reads at least one byte or reaches its end: 0 is QEMU's end of the stream
            long at = 0;
            long n;
            while ((n = out.transferFrom(ch, at, 1 << 20)) > 0) {
              at += n;
              if (at > cap) {
                throw new VmException("QEMU sent more than the " + (cap >> 20) + " MiB its guest's state can take: not kept");
              }
            }
            out.force(true);
          } finally {
            watchdog.cancel(false);
          }
        } finally {
          closer.cancel(false);
        }
        while (true) {
          Object r = q.execute("query-migrate", null);
          String st = r instanceof Map<?, ?> m ? String.valueOf(m.get("status")) : "?";
          if (st.equals("completed")) break;
          if (!st.equals("active") && !st.equals("setup") && !st.equals("device")) {
            throw new VmException("QEMU could not save the VM's state (" + st + "): " + r);
          }
          if (System.nanoTime() > until) throw new VmException("QEMU did not save the VM's state within " + timeout);
          Thread.sleep(2);
        }
      } catch (IOException e) {
        throw new VmException("cannot save the state of the VM of " + handle.sandboxId() + ": " + e.getMessage(), e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new VmException("interrupted saving the state of the VM of " + handle.sandboxId(), e);
      } finally {
        try {
          Files.deleteIfExists(socket);
        } catch (IOException ignored) {
          // the run directory goes with the VM
        }
      }
    }
  }

  /** How long a snapshot's save may take: all of the guest's RAM through a local socket. */
  private static final Duration SNAPSHOT_SAVE_TIMEOUT = Duration.ofMinutes(5);

  /**
   * The complete state into {@code dir} (see {@link QemuSnapshots} for the layout), then QEMU ends.
   * See {@link dev.flotilla.vm.Vm#suspend} for the caller's part (announce the pause to the agent,
   * close its connections). A save that fails leaves the VM running and no directory.
   */
  @Override
  public Snapshot suspend(Path dir) throws VmException {
    return save(dir, false);
  }

  /** As {@link #suspend}, and the VM runs on once its state and disk are saved: a fork's source. */
  @Override
  public Snapshot snapshot(Path dir) throws VmException {
    return save(dir, true);
  }

  private Snapshot save(Path dir, boolean runOn) throws VmException {
    long t0 = System.nanoTime();
    if (!started || process == null) throw new VmException("the VM of " + handle.sandboxId() + " has not started");
    if (exit.isDone()) throw new VmException("the VM of " + handle.sandboxId() + " has exited");
    String writable = handle.extra().get(QemuHypervisor.WRITABLE_DISK);
    String image = handle.extra().get(QemuHypervisor.IMAGE_DISK);
    String config = handle.extra().get(QemuHypervisor.CONFIG_DISK);
    if (writable == null || image == null || config == null || !handle.extra().containsKey(QemuHypervisor.KERNEL)) {
      throw new VmException("the VM of " + handle.sandboxId() + " has no disks to save (it boots from the initramfs, or was started"
          + " before snapshots existed): it cannot be snapshotted");
    }
    List<String> argv = command;
    byte[] secret;
    try {
      if (argv.isEmpty()) argv = Files.readAllLines(handle.stateDir().resolve(ARGV_FILE), StandardCharsets.UTF_8);
      secret = dev.flotilla.vm.AgentSecrets.read(handle.stateDir());
      if (Files.exists(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
        try (var s = Files.list(dir)) {
          if (s.findAny().isPresent()) throw new IOException(dir + " exists and is not empty");
        }
      }
      NodeOnlyFiles.createPrivateDir(dir);
    } catch (IOException e) {
      throw new VmException("cannot snapshot the VM of " + handle.sandboxId() + ": " + e.getMessage(), e);
    }
    int vcpus;
    int memoryMiB;
    try {
      vcpus = Integer.parseInt(QemuSnapshots.arg(argv, "-smp"));
      memoryMiB = Integer.parseInt(QemuSnapshots.arg(argv, "-m").replace("M", ""));
    } catch (IOException | NumberFormatException e) {
      throw new VmException("cannot read the VM's shape from its command line: " + e.getMessage(), e);
    }
    long createdAt = System.currentTimeMillis();
    long stopped = System.nanoTime();
    boolean done = false;
    try {
      Path state = dir.resolve(QemuSnapshots.STATE);
      saveState(state, SNAPSHOT_SAVE_TIMEOUT, false);
      // The guest is stopped (QEMU drained and flushed its block I/O at the stop, and handed the disks
      // over at the migration's end): the disk is consistent with the memory just saved.
      Path disk = dir.resolve(QemuSnapshots.DISK);
      dev.flotilla.vm.process.Ext4Disk.copySparse(Path.of(writable), disk);
      Files.setPosixFilePermissions(disk, NodeOnlyFiles.FILE_MODE);
      Files.setAttribute(disk, "unix:uid", (int) NodeOnlyFiles.nodeUid(), java.nio.file.LinkOption.NOFOLLOW_LINKS);
      long pausedMillis = 0;
      if (runOn) {
        resumeAfterSave();
        pausedMillis = (System.nanoTime() - stopped) / 1_000_000;
      }
      // the exact erofs file: a restored guest's page cache holds blocks of it
      QemuSnapshots.linkOrCopy(Path.of(image), dir.resolve(QemuSnapshots.IMAGE));
      Files.copy(Path.of(config), dir.resolve(QemuSnapshots.CONFIG), java.nio.file.StandardCopyOption.COPY_ATTRIBUTES);
      QemuSnapshots.linkOrCopy(Path.of(handle.extra().get(QemuHypervisor.KERNEL)), dir.resolve(QemuSnapshots.KERNEL));
      QemuSnapshots.linkOrCopy(Path.of(handle.extra().get(QemuHypervisor.INITRAMFS)), dir.resolve(QemuSnapshots.INITRAMFS));
      dev.flotilla.vm.AgentSecrets.write(dir, secret);
      long stateBytes = Files.size(state);
      long diskBytes = Files.size(disk);
      long diskAllocated = dev.flotilla.vm.process.Ext4Disk.allocatedBytes(disk);
      QemuSnapshots.write(dir, new QemuSnapshots.Meta(handle.sandboxId(), handle.incarnation(), vcpus, memoryMiB,
          handle.extra().getOrDefault("accel", "tcg"), argv, handle.extra().getOrDefault(QemuHypervisor.TEMPLATE, ""), stateBytes,
          diskBytes, diskAllocated, createdAt));
      if (!runOn) {
        pausedMillis = (System.nanoTime() - stopped) / 1_000_000;
        stop(Duration.ofSeconds(5));
      }
      done = true;
      long elapsed = (System.nanoTime() - t0) / 1_000_000;
      LOG.info("{} of sandbox {} incarnation {} into {}: state {} KiB, disk {} KiB allocated, guest stopped {} ms, {} ms in all",
          runOn ? "snapshot" : "suspend", handle.sandboxId(), handle.incarnation(), dir, stateBytes >> 10, diskAllocated >> 10,
          pausedMillis, elapsed);
      return new Snapshot(dir, stateBytes, diskBytes, diskAllocated, elapsed, pausedMillis, true);
    } catch (IOException e) {
      throw new VmException("cannot snapshot the VM of " + handle.sandboxId() + " into " + dir + ": " + e.getMessage(), e);
    } finally {
      if (!done) {
        QemuJail.deleteTree(dir);
        if (!exit.isDone()) {
          try {
            resumeAfterSave();
          } catch (VmException e) {
            LOG.warn("the VM of {} stays stopped after a failed snapshot: {}", handle.sandboxId(), e.getMessage());
          }
        }
      }
    }
  }

  /**
   * Runs the guest again after a save: QEMU takes its disks back ({@code cont} re-activates what
   * the migration's end handed over), once the migration has finished ({@code cont} is refused in
   * {@code finish-migrate}).
   */
  private void resumeAfterSave() throws VmException {
    long until = System.nanoTime() + QMP_TIMEOUT.toNanos();
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), QMP_TIMEOUT)) {
        String st;
        while ((st = q.status()).equals("finish-migrate") && System.nanoTime() < until) Thread.sleep(1);
        if (!st.equals("running")) q.execute("cont", null);
      } catch (IOException e) {
        throw new VmException("QMP cont on VM of " + handle.sandboxId() + " failed: " + e.getMessage(), e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new VmException("interrupted resuming the VM of " + handle.sandboxId(), e);
      }
    }
  }

  private static void close(java.io.Closeable c) {
    try {
      c.close();
    } catch (IOException ignored) {
      // closing to end a stalled transfer
    }
  }

  /** Starts copying the console, if QEMU serves it (a VM started before the console socket existed does not). */
  private void connectConsole() {
    String socket = handle.extra().get("consoleSocket");
    if (socket == null || !Files.exists(Path.of(socket))) return;
    try {
      long cap = Long.parseLong(handle.extra().getOrDefault("consoleLogBytes", Long.toString(QemuConfig.DEFAULT_CONSOLE_LOG_BYTES)));
      console = ConsoleLog.connect(Path.of(socket), qemuUid(), consoleLog(), cap, handle.sandboxId() + "-" + handle.incarnation());
    } catch (IOException | RuntimeException e) {
      LOG.debug("console of {} not (yet) there: {}", handle.sandboxId(), e.toString());
    }
  }

  private String cgroupName() {
    return handle.sandboxId().replaceAll("[^A-Za-z0-9_.-]", "_") + "-" + handle.incarnation();
  }

  /** QEMU is gone: end its network (passt, then the rules), free the cgroups, then tell. */
  private void exited(VmExit e) {
    closeNetwork();
    removeCgroups();
    exit.complete(e);
  }

  private void closeNetwork() {
    if (network != null) network.close();
  }

  /** The egress network, null for none (tests). */
  QemuNetwork network() {
    return network;
  }

  private void removeCgroups() {
    Cgroups.Sandbox cg = cgroups;
    if (cg == null) return;
    // QEMU's threads leave the cgroup a moment after its exit is reported: retry briefly.
    for (int i = 0; i < 200; i++) {
      if (cg.remove().isEmpty()) return;
      try {
        Thread.sleep(5);
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    LOG.warn("QEMU of sandbox {} left cgroups behind: {}", handle.sandboxId(), cg.remove());
  }

  /**
   * The agent's socket, which QEMU holds as the sandbox's uid: the node talks to it only if the
   * process at the other end (SO_PEERCRED) runs as that uid, so a link the sandbox's QEMU put in
   * its run directory cannot point the node at another socket of the host.
   */
  @Override
  public AgentAddress agentAddress() {
    byte[] secret = agentSecret;
    if (secret == null) {
      // Made at prepare in the node-only state directory; absent for VMs started before secrets existed.
      secret = dev.flotilla.vm.AgentSecrets.readIfTrusted(handle.stateDir());
      agentSecret = secret;
    }
    String uid = handle.extra().get("uid");
    if (uid == null) return new AgentAddress(handle.agentSocket(), java.util.OptionalLong.empty(), secret); // started before QEMU was jailed
    AgentAddress address = new AgentAddress(handle.agentSocket(), java.util.OptionalLong.of(Long.parseLong(uid)), secret);
    String from = handle.extra().get(QemuHypervisor.REBIRTH_FROM);
    if (from == null) return address;
    // A template's clone or a restored snapshot: its agent holds the saved identity until the first
    // handshake gives it this one (a handshake the agent already took is taken again as a plain one)
    long fromIncarnation = Long.parseLong(handle.extra().getOrDefault(QemuHypervisor.REBIRTH_INCARNATION, "1"));
    byte[] savedSecret = dev.flotilla.vm.AgentSecrets.readIfTrusted(handle.stateDir().resolve(QemuHypervisor.TEMPLATE_DIR));
    return address.withRebirth(new AgentAddress.Rebirth(from, fromIncarnation, savedSecret, hostname(handle.sandboxId())));
  }

  /** The guest's host name, as a cold boot's init sets it: {@code fl-<sandbox id>}, at most 63 characters. */
  static String hostname(String sandboxId) {
    String h = "fl-" + sandboxId;
    return h.length() > 63 ? h.substring(0, 63) : h;
  }

  private volatile byte[] agentSecret;

  @Override
  public void pause() throws VmException {
    qmp("stop");
  }

  @Override
  public void resume() throws VmException {
    qmp("cont");
  }

  @Override
  public boolean isPaused() throws VmException {
    return !exit.isDone() && status(QMP_TIMEOUT).equals("paused");
  }

  /** The most a balloon is waited for; it stops sooner when the guest stops giving memory back. */
  private static final Duration BALLOON_DEADLINE = Duration.ofSeconds(15);
  private static final Duration BALLOON_STALL = Duration.ofSeconds(2);

  /**
   * Memory through the virtio balloon, between {@link QemuConfig#MIN_MEMORY_MIB} (what the driver
   * boots a guest with at least: the next incarnation boots with the resized memory) and the RAM it
   * booted with (the balloon can only give back what it took). QEMU's cgroup follows, guest RAM +
   * the same overhead as at boot: raised before the guest grows, lowered once it has shrunk. The
   * vCPUs stay: microvm cannot hot-plug CPUs. A guest that cannot give back as much as asked (it
   * uses it) is refused and left as it was.
   */
  @Override
  public void resize(int vcpus, int memoryMiB) throws VmException {
    if (exit.isDone()) throw new VmException("the VM of " + handle.sandboxId() + " has exited");
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), QMP_TIMEOUT)) {
        int cpus = q.vcpuCount();
        if (vcpus != cpus) {
          throw new VmException("a qemu sandbox's vCPUs cannot change while it runs: QEMU's microvm machine has no CPU hot-plug"
              + " (it has " + cpus + ", asked for " + vcpus + ")");
        }
        long bootMiB = q.bootMemoryBytes() >> 20;
        if (memoryMiB > bootMiB) {
          throw new VmException("the VM booted with " + bootMiB + " MiB, and its balloon can give back only what it took: memory can"
              + " grow back up to " + bootMiB + " MiB, not beyond (microvm has no virtio-mem, which needs PCI); asked for " + memoryMiB + " MiB");
        }
        if (memoryMiB < QemuConfig.MIN_MEMORY_MIB) {
          throw new VmException("a qemu sandbox keeps at least " + QemuConfig.MIN_MEMORY_MIB + " MiB (what a guest boots with; its next"
              + " start boots with the resized memory); asked for " + memoryMiB + " MiB");
        }
        if (q.status().equals("paused")) {
          throw new VmException("the VM is paused, and its guest must run to give memory back or take it: resume it first");
        }
        long before = q.balloonActual();
        long target = memoryMiB * 1024L * 1024L;
        if (before == target) return;
        Cgroups.Sandbox cg = cgroups;
        OptionalLong limit = cg == null ? OptionalLong.empty() : cg.memoryLimit();
        // The overhead QEMU got beyond guest RAM at boot, kept by every resize.
        long overhead = limit.isPresent() ? limit.getAsLong() - before : -1;
        boolean grow = target > before;
        if (grow && overhead >= 0) hostLimit(cg, target + overhead);
        q.balloon(target);
        long actual = awaitBalloon(q, target);
        if (actual != target) {
          q.balloon(before);
          throw new VmException("the guest could give back only " + ((before - actual) >> 20) + " of the " + ((before - target) >> 20)
              + " MiB asked: it uses the rest; free memory inside it first, or ask for more than " + memoryMiB + " MiB");
        }
        if (!grow && overhead >= 0) {
          try {
            hostLimit(cg, target + overhead);
          } catch (VmException e) {
            q.balloon(before); // all or nothing: the guest gets its memory back
            throw e;
          }
        }
      } catch (Qmp.QmpException e) {
        if ("DeviceNotActive".equals(e.errorClass)) {
          throw new VmException("this VM has no memory balloon (it was started before live resize existed): its memory cannot change"
              + " until it is restarted", e);
        }
        throw new VmException("QMP of the VM of " + handle.sandboxId() + " refused: " + e.getMessage(), e);
      } catch (IOException e) {
        throw new VmException("QMP of the VM of " + handle.sandboxId() + " failed: " + e.getMessage(), e);
      }
    }
  }

  /** Waits until the balloon leaves the guest {@code target} bytes, or the guest stops moving it; returns where it got. */
  private long awaitBalloon(Qmp q, long target) throws IOException {
    long until = System.nanoTime() + BALLOON_DEADLINE.toNanos();
    long actual = q.balloonActual();
    long last = actual;
    long movedAt = System.nanoTime();
    while (actual != target && System.nanoTime() < until && System.nanoTime() - movedAt < BALLOON_STALL.toNanos()) {
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted waiting for the balloon", e);
      }
      actual = q.balloonActual();
      if (actual != last) {
        last = actual;
        movedAt = System.nanoTime();
      }
    }
    return actual;
  }

  private void hostLimit(Cgroups.Sandbox cg, long bytes) throws VmException {
    try {
      cg.setMemoryLimit(bytes);
    } catch (IOException e) {
      throw new VmException("cannot set QEMU's memory cgroup to " + (bytes >> 20) + " MiB: " + e.getMessage(), e);
    }
  }

  /** The guest RAM the balloon leaves the guest ({@code query-balloon}), for tests and benchmarks. */
  long balloonActual() throws VmException {
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), QMP_TIMEOUT)) {
        return q.balloonActual();
      } catch (IOException e) {
        throw new VmException("QMP of " + handle.sandboxId() + " failed: " + e.getMessage(), e);
      }
    }
  }

  /** QMP {@code query-status}: "running", "paused", ... */
  String status(Duration timeout) throws VmException {
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), timeout)) {
        return q.status();
      } catch (IOException e) {
        throw new VmException("QMP of " + handle.sandboxId() + " failed: " + e.getMessage(), e);
      }
    }
  }

  private void qmp(String command) throws VmException {
    if (exit.isDone()) throw new VmException("VM of " + handle.sandboxId() + " has exited");
    synchronized (qmpLock) {
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), QMP_TIMEOUT)) {
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
      try (Qmp q = Qmp.connect(qmpSocket(), qemuUid(), QMP_TIMEOUT)) {
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
    ConsoleLog c = console;
    if (c != null) c.close();
    closeNetwork();
    removeCgroups();
    // QEMU is gone, so nothing of the sandbox can swap a directory for a link meanwhile.
    QemuJail.deleteTree(handle.stateDir());
  }

  private void watch(ProcessHandle ph) {
    process = ph;
    // Not our child: no exit code, only that it is gone (ProcessHandle polls).
    ph.onExit().thenRunAsync(() -> exited(
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

  /** The uid QEMU runs as, empty for a VM started before QEMU was jailed. */
  private java.util.OptionalLong qemuUid() {
    String uid = handle.extra().get("uid");
    return uid == null ? java.util.OptionalLong.empty() : java.util.OptionalLong.of(Long.parseLong(uid));
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
    ConsoleLog c = console;
    if (c != null && !c.awaitDrained(CONSOLE_DRAIN_MILLIS)) {
      LOG.debug("console of {} not drained within {} ms", handle.sandboxId(), CONSOLE_DRAIN_MILLIS);
    }
    String text = ConsoleLog.tail(consoleLog(), 16384);
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

  private Path consoleLog() {
    return Path.of(Optional.ofNullable(handle.extra().get("consoleLog"))
        .orElse(handle.stateDir().resolve("console.log").toString()));
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
