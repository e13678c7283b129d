package dev.flotilla.vm.qemu;

import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.ids.IdRangeAllocator;
import dev.flotilla.vm.ids.SubordinateIds;
import dev.flotilla.vm.process.Cgroups;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code qemu} driver: each sandbox a {@code -M microvm} guest (KVM when it works, TCG
 * otherwise) booting the Flotilla guest image, its agent on a virtio-serial port that QEMU bridges
 * to a Unix socket in the VM's run directory, QMP on another for pause/resume/quit, its serial
 * console on a third that the node reads into a capped log.
 *
 * <p>Each QEMU is jailed ({@link QemuJail}): the sandbox's own unprivileged host uid (the start of
 * its id range from the {@link IdRangeAllocator}), no capabilities, no_new_privs, its own mount
 * namespace whose root holds only what QEMU needs, QEMU's seccomp sandbox, and its own cgroup
 * (memory: guest RAM + overhead, CPU: vCPUs, pids: its threads). Nothing falls back to root: a
 * host that cannot give a range or enforce the limits gets a refusal that says what to fix.
 *
 * <p>Spec options: {@code accel} ({@code kvm}/{@code tcg}) overrides the driver's choice for one VM.
 */
public final class QemuHypervisor implements Hypervisor {

  public static final String DRIVER = "qemu";
  /** sun_path holds 108 bytes including the NUL. */
  private static final int MAX_SOCKET_PATH = 107;
  private static final Pattern SAFE_ID = Pattern.compile("[A-Za-z0-9._:-]{1,200}");
  private static final Logger LOG = LoggerFactory.getLogger(QemuHypervisor.class);
  /** The limits every QEMU gets; a host that cannot enforce one of these refuses (unless configured not to). */
  private static final Set<String> LIMITS = Set.of("memory", "cpu", "pids");

  /**
   * TCG's translation cache. QEMU 7.2's default is a 1 GiB buffer touched as code is translated
   * (~96 MiB by the time the agent answers): bounded here so that QEMU fits its memory cgroup
   * (guest RAM + overhead) however long the guest runs. A full cache is flushed, not fatal.
   */
  static final int TCG_TB_SIZE_MIB = 128;

  private final QemuConfig config;
  private final IdRangeAllocator ids;
  private Cgroups.Layout cgroups;
  private QemuJail.Tree tree;

  /**
   * @param ids where each sandbox's uid comes from; the node shares one allocator between its
   *     drivers, so that a sandbox keeps one range whichever driver runs it
   */
  public QemuHypervisor(QemuConfig config, IdRangeAllocator ids) {
    this.config = config;
    this.ids = ids;
  }

  /**
   * With the host-wide allocator over the node user's /etc/subuid and /etc/subgid delegations,
   * keyed by the driver's state root ({@link IdRangeAllocator#forNode}): for tools and tests that
   * run the driver alone. A node passes its own, shared with its other drivers.
   */
  public QemuHypervisor(QemuConfig config) {
    this(config, IdRangeAllocator.forNode(config.stateRoot()));
  }

  public QemuConfig config() {
    return config;
  }

  public IdRangeAllocator ids() {
    return ids;
  }

  @Override
  public String driver() {
    return DRIVER;
  }

  @Override
  public HypervisorCapabilities capabilities() {
    List<String> warnings = new ArrayList<>();
    if (!config.imageBuilt()) {
      warnings.add("no guest image in " + config.imageDir() + ": run guest-image/build.sh");
    }
    HostProbe.Accel accel = HostProbe.accel(config);
    if (!accel.kvm()) {
      warnings.add("no usable KVM (" + accel.reason() + "): guests run under TCG emulation, several times slower");
    }
    jailProblem().ifPresent(p -> warnings.add("cannot jail QEMU, so no VM starts: " + p));
    if (ids.capacity() == 0) {
      warnings.add("no subordinate id range for the node's user, so no VM starts (each QEMU runs as its sandbox's own uid): "
          + "run scripts/setup-host.sh");
    }
    Set<String> enforced = enforcedLimits();
    for (String l : LIMITS) {
      if (!enforced.contains(l)) {
        warnings.add("QEMU's " + l + " limit cannot be enforced here (no writable " + l + " cgroup)"
            + (config.requireLimits() ? ": no VM starts" : ": VMs start without it (requireLimits = false)"));
      }
    }
    cgroups().problems().forEach(warnings::add);
    warnings.add("the spec's pidsLimit is not applied inside the guest (the VM's memory bounds it); "
        + "QEMU's own threads are capped at " + config.threadsLimit());
    // "pids" limits QEMU's threads, not the guest's processes: only memory and cpu are the spec's limits enforced.
    Set<String> specLimits = new java.util.TreeSet<>(enforced);
    specLimits.remove("pids");
    return new HypervisorCapabilities("vm", true, true, specLimits, warnings);
  }

  /** Which of memory, cpu and pids this host's cgroups can limit for a QEMU. */
  Set<String> enforcedLimits() {
    Set<String> out = new java.util.TreeSet<>();
    Cgroups.Layout l = cgroups();
    if (l.mount(Cgroups.Controller.MEMORY).isPresent()) out.add("memory");
    if (l.mount(Cgroups.Controller.CPU).isPresent()) out.add("cpu");
    if (l.mount(Cgroups.Controller.PIDS).isPresent()) out.add("pids");
    return out;
  }

  synchronized Cgroups.Layout cgroups() {
    if (cgroups == null) cgroups = Cgroups.detect(config.cgroupParent());
    return cgroups;
  }

  private Optional<String> jailProblem() {
    if (!SubordinateIds.currentUid().map(u -> u == 0).orElse(false)) {
      return Optional.of("the node must run as root to build each QEMU's jail (mount namespace, pivot_root, setpriv)");
    }
    return QemuJail.missingHostTools();
  }

  private synchronized QemuJail.Tree tree() throws VmException {
    if (tree == null) {
      try {
        tree = QemuJail.ensure(config.stateRoot(), config.qemuBinary());
      } catch (IOException e) {
        throw new VmException("cannot build the jail root for QEMU in " + config.stateRoot() + ": " + e.getMessage(), e);
      }
    }
    return tree;
  }

  @Override
  public Vm prepare(VmSpec spec) throws VmException {
    if (spec.options().containsKey(dev.flotilla.vm.VmSpec.IMAGE)) {
      throw new VmException("the qemu driver does not run images yet (image " + spec.options().get(dev.flotilla.vm.VmSpec.IMAGE) + ")");
    }
    if (!config.imageBuilt()) {
      throw new VmException("the qemu driver has no guest image in " + config.imageDir()
          + ": build it with guest-image/build.sh (or point FLOTILLA_QEMU_IMAGE_DIR at one)");
    }
    if (spec.memoryMiB() < QemuConfig.MIN_MEMORY_MIB) {
      throw new VmException("the qemu driver needs memoryMiB >= " + QemuConfig.MIN_MEMORY_MIB
          + " (the guest unpacks a Java runtime into RAM); asked for " + spec.memoryMiB());
    }
    if (!SAFE_ID.matcher(spec.sandboxId()).matches()) {
      throw new VmException("sandbox id '" + spec.sandboxId() + "' cannot go on a kernel command line: use letters, digits, . _ : -");
    }
    Path dir = spec.stateDir().toAbsolutePath();
    Path run = dir.resolve("run");
    Path agent = run.resolve("agent.sock");
    Path qmp = run.resolve("qmp.sock");
    Path console = run.resolve("console.sock");
    if (console.toString().getBytes(StandardCharsets.UTF_8).length > MAX_SOCKET_PATH) {
      throw new VmException("state directory " + dir + " is too long for a Unix socket path (max "
          + (MAX_SOCKET_PATH - "/run/console.sock".length()) + " bytes)");
    }
    String accelOpt = spec.options().get("accel");
    boolean kvm;
    if (accelOpt == null) {
      kvm = HostProbe.accel(config).kvm();
    } else if (accelOpt.equals("kvm") || accelOpt.equals("tcg")) {
      kvm = accelOpt.equals("kvm");
    } else {
      throw new VmException("option accel must be kvm or tcg, not '" + accelOpt + "'");
    }
    Optional<String> problem = jailProblem();
    if (problem.isPresent()) throw new VmException("cannot jail QEMU: " + problem.get());
    Set<String> enforced = enforcedLimits();
    if (config.requireLimits() && !enforced.containsAll(LIMITS)) {
      Set<String> missing = new java.util.TreeSet<>(LIMITS);
      missing.removeAll(enforced);
      throw new VmException("this host cannot enforce QEMU's " + String.join(", ", missing) + " limit (no writable cgroup: "
          + String.join("; ", cgroups().problems()) + "); fix the cgroup mounts or set requireLimits = false");
    }
    for (Path image : List.of(config.kernel(), config.initramfs())) {
      if (!readableByOthers(image)) {
        throw new VmException(image + " is not readable by others, so the sandbox's uid cannot boot it: chmod o+r it");
      }
    }
    long uid;
    try {
      uid = ids.acquire(spec.sandboxId()).hostStart();
    } catch (IdRangeAllocator.NoRangeException e) {
      throw new VmException("no host uid for sandbox " + spec.sandboxId() + ": " + e.getMessage()
          + "; run scripts/setup-host.sh as root to delegate a range to the node's user (QEMU never runs as root)", e);
    } catch (IOException e) {
      throw new VmException("cannot record sandbox " + spec.sandboxId() + "'s id range: " + e.getMessage(), e);
    }
    QemuJail.Tree jail = tree();
    Optional<String> kvmDevice = Optional.empty();
    if (kvm) {
      kvmDevice = QemuJail.deviceNumbers(Path.of("/dev/kvm"));
      if (kvmDevice.isEmpty()) throw new VmException("KVM chosen but /dev/kvm is not a device here");
    }
    try {
      privateDir(dir);
      runDir(run, uid);
      // The guest's agent takes the first handshake's secret as its own (--secret-on-first-handshake:
      // its virtio-serial port is reached only through QEMU); the node keeps it node-only.
      dev.flotilla.vm.AgentSecrets.create(dir);
    } catch (IOException e) {
      throw new VmException("cannot create state directory " + dir + ": " + e.getMessage(), e);
    }
    VmHandle handle = new VmHandle(DRIVER, spec.sandboxId(), spec.incarnation(), 0, 0, dir, agent, java.util.Map.of())
        .withExtra("qmpSocket", qmp.toString())
        .withExtra("consoleSocket", console.toString())
        .withExtra("consoleLog", dir.resolve("console.log").toString())
        .withExtra("consoleLogBytes", Long.toString(config.consoleLogBytes()))
        .withExtra("accel", kvm ? "kvm" : "tcg")
        .withExtra("uid", Long.toString(uid));
    List<String> qemu = command(spec, kvm);
    List<String> launch = QemuJail.launch(jail.root(), jail.qemu(), run, config.kernel(), config.initramfs(), uid,
        kvmDevice, qemu.subList(1, qemu.size()));
    long memoryLimit = (spec.memoryMiB() + (long) config.memoryOverheadMiB()) * 1024L * 1024L;
    return new QemuVm(handle, qemu, launch, new QemuVm.Limits(cgroups(), memoryLimit, spec.vcpus(), config.threadsLimit(),
        config.requireLimits() ? LIMITS : Set.of()));
  }

  /** The VM's directory: node-only (0700, root), never a link. */
  private static void privateDir(Path dir) throws IOException {
    if (Files.isSymbolicLink(dir)) throw new IOException(dir + " is a symbolic link");
    Files.createDirectories(dir);
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
  }

  /** Where QEMU puts its sockets: the sandbox uid's own (0700), emptied of what an earlier start left. */
  private static void runDir(Path run, long uid) throws IOException {
    QemuJail.deleteTree(run);
    Files.createDirectory(run, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
    Files.setAttribute(run, "unix:uid", (int) uid, LinkOption.NOFOLLOW_LINKS);
    Files.setAttribute(run, "unix:gid", (int) uid, LinkOption.NOFOLLOW_LINKS);
  }

  private static boolean readableByOthers(Path file) {
    try {
      return Files.getPosixFilePermissions(file).contains(PosixFilePermission.OTHERS_READ);
    } catch (IOException e) {
      return false;
    }
  }

  @Override
  public Optional<Vm> adopt(VmHandle handle) {
    if (!DRIVER.equals(handle.driver()) || handle.pid() <= 0) return Optional.empty();
    if (!HostProbe.isSameProcess(handle.pid(), handle.startTime())) return Optional.empty();
    QemuVm vm = new QemuVm(handle);
    try {
      String status = vm.status(Duration.ofSeconds(5));
      LOG.info("adopted QEMU pid {} of sandbox {} incarnation {} ({})", handle.pid(), handle.sandboxId(),
          handle.incarnation(), status);
    } catch (VmException e) {
      // the process is ours (same start time): hand it over all the same, so it can be stopped
      LOG.warn("adopted QEMU pid {} does not answer QMP: {}", handle.pid(), e.getMessage());
    }
    return Optional.of(vm);
  }

  /**
   * The qemu driver keeps nothing of a sandbox beyond its VMs but its id range, which the node's
   * drivers share: every holder is listed, so that a sandbox's range is freed once it is deleted or
   * has moved away even on a node without the process driver (releasing twice is harmless).
   */
  @Override
  public Set<String> sandboxesWithLocalState() {
    try {
      return Set.copyOf(ids.holders().keySet());
    } catch (IOException e) {
      LOG.warn("cannot read the id range table: {}", e.getMessage());
      return Set.of();
    }
  }

  /** Frees the sandbox's id range (the caller has checked that no VM of it runs here). */
  @Override
  public void releaseSandbox(String sandboxId) {
    try {
      ids.release(sandboxId);
    } catch (IOException e) {
      LOG.warn("sandbox {}: cannot release its id range: {}", sandboxId, e.getMessage());
    }
  }

  /**
   * Reaps what is left of a VM: QEMU if it still runs (same pid and start time), then its cgroups
   * and its state directory, also when QEMU is long gone (adopt finds nothing then).
   */
  @Override
  public void reap(VmHandle handle) {
    if (!DRIVER.equals(handle.driver())) return;
    QemuVm vm = adopt(handle).map(QemuVm.class::cast).orElseGet(() -> QemuVm.gone(handle));
    vm.kill();
    try {
      vm.exitFuture().get(30, java.util.concurrent.TimeUnit.SECONDS);
    } catch (Exception e) {
      LOG.warn("QEMU pid {} of sandbox {} did not die: keeping its state for the next attempt", handle.pid(), handle.sandboxId());
      return;
    }
    vm.destroy();
  }

  /** QEMU's argv (binary first) with the jail's paths: what runs after setpriv. */
  List<String> command(VmSpec spec, boolean kvm) {
    StringBuilder append = new StringBuilder("console=ttyS0 quiet panic=-1");
    long tsc = kvm ? 0 : HostProbe.tscKhz();
    if (tsc > 0) append.append(" tsc_early_khz=").append(tsc);
    append.append(" flotilla.sandbox_id=").append(spec.sandboxId())
        .append(" flotilla.incarnation=").append(spec.incarnation());
    List<String> cmd = new ArrayList<>(List.of(
        config.qemuBinary(),
        "-name", "flotilla-" + spec.sandboxId() + "-" + spec.incarnation(),
        "-M", "microvm,pit=on",
        "-accel", kvm ? "kvm" : "tcg,tb-size=" + TCG_TB_SIZE_MIB));
    if (kvm) cmd.addAll(List.of("-cpu", "host"));
    cmd.addAll(List.of(
        "-smp", Integer.toString(spec.vcpus()),
        "-m", spec.memoryMiB() + "M",
        "-nodefaults", "-no-user-config", "-display", "none",
        // the guest's end (agent exit -> kernel panic -> reboot, or power off) ends QEMU
        "-no-reboot",
        // QEMU's own seccomp filter: no obsolete syscalls, no setuid & co, no fork/exec, no
        // scheduler/affinity changes (it needs none of them once running)
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-kernel", QemuJail.KERNEL,
        "-initrd", QemuJail.INITRAMFS,
        "-append", append.toString(),
        // first, and waited for: QEMU starts the guest only once the node reads the console, so
        // nothing of the boot is lost; a node that goes away later just stops the copy
        "-chardev", "socket,id=console,path=" + QemuJail.RUN + "/console.sock,server=on,wait=on",
        "-serial", "chardev:console",
        "-device", "virtio-serial-device,max_ports=2",
        "-chardev", "socket,id=agent,path=" + QemuJail.RUN + "/agent.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=flotilla.agent",
        "-chardev", "socket,id=qmp,path=" + QemuJail.RUN + "/qmp.sock,server=on,wait=off",
        "-mon", "chardev=qmp,mode=control"));
    return cmd;
  }
}
