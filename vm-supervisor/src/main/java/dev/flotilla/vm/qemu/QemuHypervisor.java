package dev.flotilla.vm.qemu;

import dev.flotilla.vm.AgentSecrets;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.ImageRootfs;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.process.Ext4Disk;
import dev.flotilla.vm.SpawnGate;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.ids.IdRangeAllocator;
import dev.flotilla.vm.ids.SubordinateIds;
import dev.flotilla.vm.net.EgressHost;
import dev.flotilla.vm.net.EgressPolicy;
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
import java.util.Map;
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
 * <p>The guest's root is an OCI image ({@link VmSpec#IMAGE}, else the default image): the image's
 * layers as a read-only erofs block device built once per image ({@link ImageDisks}), the sandbox's
 * own writable ext4 disk of {@link VmSpec#DISK_MIB} (node-only, the sandbox's uid's, kept across its
 * restarts on this node), and a small read-only config disk with the image's exec defaults; the
 * guest's init overlays the first two and the agent, outside that root, runs every tenant process in it.
 *
 * <p>Networking ({@link QemuNetwork}): {@code network=none}, the default, gives the VM no network
 * device at all; {@code egress} a virtio-net device backed by passt, running as the sandbox's uid on
 * the node, held to the same host rules and per-sandbox DNS proxy as a process sandbox
 * ({@link EgressHost}, {@link dev.flotilla.vm.net.SandboxRules}).
 *
 * <p>Spec options: {@code accel} ({@code kvm}/{@code tcg}) overrides the driver's choice for one VM;
 * {@code rootfs=initramfs} boots without any disk, the tenant's processes in the initramfs (for
 * comparison benchmarks; no image may be named then).
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

  /** Spec option: {@code initramfs} to boot without disks (see the class comment). */
  public static final String ROOTFS_OPTION = "rootfs";

  private final QemuConfig config;
  private final SpawnGate gate = new SpawnGate();
  private final IdRangeAllocator ids;
  private final ImageRootfs images;
  private final ImageDisks imageDisks;
  private final EgressHost egress;
  private final QemuTemplates templates;
  private Cgroups.Layout cgroups;
  private QemuJail.Tree tree;

  /**
   * @param ids where each sandbox's uid comes from; the node shares one allocator between its
   *     drivers, so that a sandbox keeps one range whichever driver runs it
   */
  public QemuHypervisor(QemuConfig config, IdRangeAllocator ids) {
    this(config, ids, ImageRootfs.NONE);
  }

  /** @param images where the layers of a sandbox's image come from (the default image needs none) */
  public QemuHypervisor(QemuConfig config, IdRangeAllocator ids, ImageRootfs images) {
    this.config = config;
    this.ids = ids;
    this.images = images;
    this.imageDisks = new ImageDisks(config.imageDisksDir(), config.imageDiskCacheBytes());
    this.egress = new EgressHost(config.network());
    this.templates = new QemuTemplates(this);
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

  /** The egress side this driver shares with its VMs' networks (tests refresh through it). */
  EgressHost egress() {
    return egress;
  }

  @Override
  public Optional<dev.flotilla.vm.TemplateCatalog> templates() {
    return templates.enabled() ? Optional.of(templates) : Optional.empty();
  }

  /** The templates, on or off (tests). */
  QemuTemplates templateStore() {
    return templates;
  }

  /** Marks this driver's firewall rules: its state root's name is unique per node data directory. */
  String egressCommentPrefix() {
    return "flotilla-qemu:" + config.stateRoot().getFileName() + ":";
  }

  @Override
  public String driver() {
    return DRIVER;
  }

  @Override
  public HypervisorCapabilities capabilities() {
    List<String> warnings = new ArrayList<>();
    if (!config.imageBuilt()) {
      warnings.add("no guest image in " + config.imageDir() + (config.buildScript().isPresent()
          ? " yet: the first VM builds it (guest-image/build.sh, about a minute)" : ": point FLOTILLA_QEMU_IMAGE_DIR at a built one"));
    }
    if (!java.nio.file.Files.isDirectory(config.defaultRootfs())) {
      warnings.add("no default image at " + config.defaultRootfs() + " (guest-image/build-default-image.sh): only sandboxes with an image start");
    }
    ImageDisks.missingTools().ifPresent(p -> warnings.add("no VM starts: " + p + " (scripts/setup-host.sh installs it)"));
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
    List<String> noEgress = QemuNetwork.missing(egress);
    if (!noEgress.isEmpty()) warnings.add("no network egress for QEMU sandboxes: " + String.join("; ", noEgress) + " (scripts/setup-host.sh)");
    warnings.add("the spec's pidsLimit is not applied inside the guest (the VM's memory bounds it); "
        + "QEMU's own threads are capped at " + config.threadsLimit());
    // "pids" limits QEMU's threads, not the guest's processes: only memory and cpu are the spec's limits enforced.
    Set<String> specLimits = new java.util.TreeSet<>(enforced);
    specLimits.remove("pids");
    // egress is enforced by the host's firewall outside the VM (QemuNetwork): offered where it can be
    if (noEgress.isEmpty()) specLimits.add("network-egress");
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
    long t0 = System.nanoTime();
    String rootfsOpt = spec.options().getOrDefault(ROOTFS_OPTION, "image");
    boolean withDisks = !rootfsOpt.equals("initramfs");
    if (!withDisks && spec.options().containsKey(VmSpec.IMAGE)) {
      throw new VmException("option rootfs=initramfs runs no image: drop it or the image");
    }
    if (withDisks && !rootfsOpt.equals("image")) throw new VmException("option rootfs must be image or initramfs, not '" + rootfsOpt + "'");
    int diskMiB;
    try {
      diskMiB = Integer.parseInt(spec.options().getOrDefault(VmSpec.DISK_MIB, Integer.toString(config.defaultDiskMiB())));
    } catch (NumberFormatException e) {
      throw new VmException("option " + VmSpec.DISK_MIB + " must be a number of MiB");
    }
    if (diskMiB < 16) throw new VmException("the writable disk needs at least 16 MiB; asked for " + diskMiB);
    EgressPolicy policy;
    try {
      policy = EgressPolicy.fromOptions(spec.options());
    } catch (IllegalArgumentException e) {
      throw new VmException("invalid network for sandbox " + spec.sandboxId() + ": " + e.getMessage(), e);
    }
    if (policy.egress()) {
      List<String> missing = QemuNetwork.missing(egress);
      if (!missing.isEmpty()) {
        throw new VmException("egress networking is not available for QEMU sandboxes on this host: " + String.join("; ", missing)
            + ". To fix: run scripts/setup-host.sh as root");
      }
    }
    GuestImageBuild.ensure(config);
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
    String restoreFrom = spec.options().get(VmSpec.RESTORE_FROM);
    if (restoreFrom != null) {
      if (!withDisks) throw new VmException("option " + VmSpec.RESTORE_FROM + " restores the snapshot's disks: drop rootfs=initramfs");
      return prepareRestore(spec, Path.of(restoreFrom).toAbsolutePath().normalize(), dir, uid, jail, policy);
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
    long checked = System.nanoTime();
    Optional<GuestDisks> guest = withDisks ? Optional.of(guestDisks(spec)) : Optional.empty();
    long imaged = System.nanoTime();
    // A template of the sandbox's shape (built now on first need), else a cold boot, and why. A new
    // disk starts as a copy of the disk of a template whose root was mounted before its save; a
    // disk the sandbox already has (a restart here) is mounted by its clone, from a template that
    // never mounted one: a guest that had mounted another disk's file system must never write it.
    Path writable = writableDisk(spec.sandboxId());
    boolean newDisk = !Files.exists(writable, LinkOption.NOFOLLOW_LINKS);
    Optional<QemuTemplates.Saved> template = Optional.empty();
    String[] cold = {coldReason(spec, policy, guest)};
    if (cold[0] == null) {
      try {
        long diskBytes = newDisk ? diskMiB * 1024L * 1024L : Files.size(writable);
        template = templates.acquire(shape(spec, kvm, guest.get(), diskBytes, policy.egress(), newDisk),
            templateBuilder(spec, kvm, kvmDevice, policy.egress()), spec.sandboxId(), r -> cold[0] = r);
      } catch (VmException | IOException | RuntimeException e) {
        cold[0] = "its template's shape is unknown: " + e.getMessage();
      }
    }
    Optional<QemuJail.Disks> disks;
    try {
      Optional<Path> from = template.filter(QemuTemplates.Saved::mounted).map(QemuTemplates.Saved::disk);
      disks = guest.isPresent() ? Optional.of(disks(spec, dir, uid, diskMiB, guest.get(), from)) : Optional.empty();
    } catch (VmException | RuntimeException e) {
      template.ifPresent(t -> templates.detached(t.id(), spec.sandboxId()));
      throw e;
    }
    long disked = System.nanoTime();
    if (template.isEmpty() && templates.enabled()) LOG.info("sandbox {} boots cold: {}", spec.sandboxId(), cold[0]);
    VmHandle handle = new VmHandle(DRIVER, spec.sandboxId(), spec.incarnation(), 0, 0, dir, agent, java.util.Map.of())
        .withExtra("qmpSocket", qmp.toString())
        .withExtra("consoleSocket", console.toString())
        .withExtra("consoleLog", dir.resolve("console.log").toString())
        .withExtra("consoleLogBytes", Long.toString(config.consoleLogBytes()))
        .withExtra("accel", kvm ? "kvm" : "tcg")
        .withExtra("uid", Long.toString(uid));
    if (disks.isPresent()) handle = withDisks(handle, disks.get(), config.kernel(), config.initramfs());
    Optional<QemuNetwork> network = policy.egress()
        ? Optional.of(new QemuNetwork(egress, spec.sandboxId(), spec.incarnation(), uid, policy, dir, run, egressCommentPrefix()))
        : Optional.empty();
    long memoryLimit = (spec.memoryMiB() + (long) config.memoryOverheadMiB()) * 1024L * 1024L;
    QemuVm.Limits limits = new QemuVm.Limits(cgroups(), memoryLimit, spec.vcpus(), config.threadsLimit(),
        config.requireLimits() ? LIMITS : Set.of());
    if (template.isPresent()) {
      QemuTemplates.Saved t = template.get();
      try {
        // what the clone's agent answers to until its rebirth: the template's identity and secret
        AgentSecrets.write(NodeOnlyFiles.createPrivateDir(dir.resolve(TEMPLATE_DIR)), AgentSecrets.read(t.dir()));
      } catch (IOException e) {
        templates.detached(t.id(), spec.sandboxId());
        throw new VmException("cannot read template " + t.id() + "'s agent secret: " + e.getMessage(), e);
      }
      handle = handle.withExtra(TEMPLATE, t.id()).withExtra(REBIRTH_FROM, t.sandboxId());
      // the template's command line: the same devices, RAM and kernel arguments its state was saved with
      List<String> qemu = new ArrayList<>(command(templateSpec(t.sandboxId(), spec, dir), kvm, true, network,
          Optional.of(MemoryFile.CLONE), t.mounted()));
      qemu.set(qemu.indexOf("-name") + 1, "flotilla-" + spec.sandboxId() + "-" + spec.incarnation()); // its own, not the template's
      List<String> launch = QemuJail.launch(jail.root(), jail.qemu(), run, config.kernel(), config.initramfs(), uid, kvmDevice, disks,
          Optional.of(new QemuJail.Memory(t.memory(), java.util.OptionalLong.of(t.gid()))), qemu.subList(1, qemu.size()));
      QemuVm vm = new QemuVm(handle, qemu, launch, limits, gate, network.orElse(null), t.state());
      vm.exitFuture().whenComplete((x, e) -> templates.detached(t.id(), spec.sandboxId()));
      long end = System.nanoTime();
      LOG.info("sandbox {} incarnation {} prepared from template {} in {} ms (checks and state directory {}, image disk {},"
          + " template, writable and config disks {}, command line {} ms)", spec.sandboxId(), spec.incarnation(), t.id(),
          (end - t0) / 1_000_000, (checked - t0) / 1_000_000, (imaged - checked) / 1_000_000, (disked - imaged) / 1_000_000,
          (end - disked) / 1_000_000);
      return vm;
    }
    List<String> qemu = command(spec, kvm, withDisks, network);
    List<String> launch = QemuJail.launch(jail.root(), jail.qemu(), run, config.kernel(), config.initramfs(), uid,
        kvmDevice, disks, qemu.subList(1, qemu.size()));
    return new QemuVm(handle, qemu, launch, limits, gate, network.orElse(null));
  }

  /** Handle extras of a VM started from a template: its id, and the identity its agent held until the rebirth. */
  static final String TEMPLATE = "template";
  static final String REBIRTH_FROM = "rebirthFrom";
  /** Handle extra: the incarnation of {@link #REBIRTH_FROM} (absent: 1, a template's). */
  static final String REBIRTH_INCARNATION = "rebirthIncarnation";
  /** Handle extra: the snapshot a VM was restored from. */
  static final String RESTORED_FROM = "restoredFrom";
  /** Handle extras: the host files of the guest's disks, which a snapshot saves. */
  static final String WRITABLE_DISK = "writableDisk";
  static final String IMAGE_DISK = "imageDisk";
  static final String CONFIG_DISK = "configDisk";

  /** Handle extras: the kernel and initramfs the guest booted, which a snapshot keeps. */
  static final String KERNEL = "kernel";
  static final String INITRAMFS = "initramfs";

  private static VmHandle withDisks(VmHandle handle, QemuJail.Disks d, Path kernel, Path initramfs) {
    return handle.withExtra(WRITABLE_DISK, d.writable().toString()).withExtra(IMAGE_DISK, d.image().toString())
        .withExtra(CONFIG_DISK, d.config().toString()).withExtra(KERNEL, kernel.toString()).withExtra(INITRAMFS, initramfs.toString());
  }


  /**
   * The VM of {@code spec} as the snapshot in {@code snapshot} left it ({@link VmSpec#RESTORE_FROM}):
   * the snapshot's command line, devices, kernel and disks; its state streamed in at start; its
   * writable disk copied (sparsely) to the sandbox's own; its agent reborn at the first handshake
   * from the snapshot's identity to the spec's, with a new secret. The snapshot stays as it was: it
   * can be restored again (a fork's source, a retry).
   */
  private Vm prepareRestore(VmSpec spec, Path snapshot, Path dir, long uid, QemuJail.Tree jail, EgressPolicy policy)
      throws VmException {
    String what = "cannot restore sandbox " + spec.sandboxId() + " from " + snapshot + ": ";
    QemuSnapshots.Meta meta;
    try {
      meta = QemuSnapshots.read(snapshot);
    } catch (IOException e) {
      throw new VmException(what + e.getMessage(), e);
    }
    if (meta.vcpus() != spec.vcpus() || meta.memoryMiB() != spec.memoryMiB()) {
      throw new VmException(what + "it was taken with " + meta.vcpus() + " vCPUs and " + meta.memoryMiB() + " MiB, and restores only"
          + " as such (asked for " + spec.vcpus() + " vCPUs, " + spec.memoryMiB() + " MiB)");
    }
    boolean kvm = meta.accel().equals("kvm");
    Optional<String> kvmDevice = kvm ? QemuJail.deviceNumbers(Path.of("/dev/kvm")) : Optional.empty();
    if (kvm && kvmDevice.isEmpty()) throw new VmException(what + "it was taken under KVM, which this host lacks");
    String networkRefusal = QemuSnapshots.networkRefusal(meta, policy.egress() ? QemuNetwork.guestConfig(egress.config()) : null);
    if (networkRefusal != null) throw new VmException(what + networkRefusal);
    Path run = dir.resolve("run");
    Path disk = writableDisk(spec.sandboxId());
    Path image = dir.resolve("image" + ImageDisks.SUFFIX);
    Path configDisk = dir.resolve("config.disk");
    // all in the VM's own directory: the snapshot may go once the VM has started
    Path kernel = dir.resolve(QemuSnapshots.KERNEL);
    Path initramfs = dir.resolve(QemuSnapshots.INITRAMFS);
    try {
      privateDir(dir);
      runDir(run, uid);
      AgentSecrets.create(dir);
      // what the restored agent answers to until its rebirth: the saved identity's secret
      AgentSecrets.write(NodeOnlyFiles.createPrivateDir(dir.resolve(TEMPLATE_DIR)), AgentSecrets.read(snapshot));
      NodeOnlyFiles.createPrivateDir(config.disksDir());
      Path tmp = disk.resolveSibling(disk.getFileName() + ".tmp");
      Files.deleteIfExists(tmp);
      Ext4Disk.copySparse(snapshot.resolve(QemuSnapshots.DISK), tmp);
      Files.setAttribute(tmp, "unix:uid", (int) uid, LinkOption.NOFOLLOW_LINKS);
      Files.setAttribute(tmp, "unix:gid", (int) uid, LinkOption.NOFOLLOW_LINKS);
      Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-------"));
      Files.move(tmp, disk, java.nio.file.StandardCopyOption.ATOMIC_MOVE, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      Files.deleteIfExists(image);
      QemuSnapshots.linkOrCopy(snapshot.resolve(QemuSnapshots.IMAGE), image);
      Files.deleteIfExists(configDisk);
      Files.copy(snapshot.resolve(QemuSnapshots.CONFIG), configDisk);
      Files.setPosixFilePermissions(configDisk, PosixFilePermissions.fromString("rw-r--r--"));
      for (Path p : List.of(kernel, initramfs)) {
        Files.deleteIfExists(p);
        QemuSnapshots.linkOrCopy(snapshot.resolve(p.getFileName().toString()), p);
      }
    } catch (IOException e) {
      throw new VmException(what + e.getMessage(), e);
    }
    QemuJail.Disks disks = new QemuJail.Disks(image, disk, configDisk);
    VmHandle handle = new VmHandle(DRIVER, spec.sandboxId(), spec.incarnation(), 0, 0, dir, run.resolve("agent.sock"), Map.of())
        .withExtra("qmpSocket", run.resolve("qmp.sock").toString())
        .withExtra("consoleSocket", run.resolve("console.sock").toString())
        .withExtra("consoleLog", dir.resolve("console.log").toString())
        .withExtra("consoleLogBytes", Long.toString(config.consoleLogBytes()))
        .withExtra("accel", meta.accel())
        .withExtra("uid", Long.toString(uid))
        .withExtra(REBIRTH_FROM, meta.sandboxId())
        .withExtra(REBIRTH_INCARNATION, Long.toString(meta.incarnation()))
        .withExtra(RESTORED_FROM, snapshot.toString());
    handle = withDisks(handle, disks, kernel, initramfs);
    List<String> qemu = QemuSnapshots.restoreArgv(meta, "flotilla-" + spec.sandboxId() + "-" + spec.incarnation());
    List<String> launch = QemuJail.launch(jail.root(), jail.qemu(), run, kernel, initramfs, uid, kvmDevice, Optional.of(disks), qemu.subList(1, qemu.size()));
    long memoryLimit = (spec.memoryMiB() + (long) config.memoryOverheadMiB()) * 1024L * 1024L;
    QemuVm.Limits limits = new QemuVm.Limits(cgroups(), memoryLimit, spec.vcpus(), config.threadsLimit(),
        config.requireLimits() ? LIMITS : Set.of());
    // an egress sandbox's network is made anew: its own passt (the guest's virtio-net device,
    // restored, connects to it), and the host's rules from the sandbox's policy as it is now
    Optional<QemuNetwork> network = policy.egress()
        ? Optional.of(new QemuNetwork(egress, spec.sandboxId(), spec.incarnation(), uid, policy, dir, run, egressCommentPrefix()))
        : Optional.empty();
    LOG.info("sandbox {} incarnation {} restores from {} (saved as {} incarnation {}){}", spec.sandboxId(), spec.incarnation(), snapshot,
        meta.sandboxId(), meta.incarnation(), network.isPresent() ? " with an egress network" : "");
    return new QemuVm(handle, qemu, launch, limits, gate, network.orElse(null), snapshot.resolve(QemuSnapshots.STATE), false);
  }

  /** In a clone's state directory: the template's agent secret, which the clone's first handshake presents. */
  static final String TEMPLATE_DIR = "template";

  /** Spec option: {@code off} starts this VM cold even where a template could serve it (benchmarks, diagnosis). */
  public static final String TEMPLATE_OPTION = "template";

  /** Why a spec cannot start from a template (null: it can). */
  private String coldReason(VmSpec spec, EgressPolicy policy, Optional<GuestDisks> guest) {
    if (!templates.enabled()) return "templates are off (template-cache = 0)";
    if (guest.isEmpty()) return "it boots from the initramfs (rootfs=initramfs)";
    if ("off".equals(spec.options().get(TEMPLATE_OPTION))) return "its spec says template=off";
    return null;
  }

  /** The template VM's spec: the clone's shape under the template's own identity. */
  private static VmSpec templateSpec(String templateSandboxId, VmSpec like, Path dir) {
    return new VmSpec(templateSandboxId, 1, like.vcpus(), like.memoryMiB(), like.pidsLimit(), dir, Map.of());
  }

  /** Everything that makes a guest's memory another's of the same shape (see {@link QemuTemplates.Shape}). */
  private QemuTemplates.Shape shape(VmSpec spec, boolean kvm, GuestDisks guest, long diskBytes, boolean egress, boolean rootMounted)
      throws VmException {
    String image = spec.options().getOrDefault(VmSpec.IMAGE, "");
    int at = image.indexOf('@');
    String digest = at >= 0 ? image.substring(at + 1) : "";
    try {
      String guestImage = config.kernel() + "|" + Files.size(config.kernel()) + "|" + Files.getLastModifiedTime(config.kernel()).toMillis()
          + "|" + config.initramfs() + "|" + Files.size(config.initramfs()) + "|" + Files.getLastModifiedTime(config.initramfs()).toMillis()
          + "|" + config.qemuBinary() + "|" + guest.imageDisk().getFileName()
          // the guest's side of an egress network is the same for every sandbox of the node (its
          // address, gateway and resolver; the policy is the host's, per sandbox): one template serves all
          + "|" + (egress ? QemuNetwork.guestConfig(egress().config()) : "no network");
      return new QemuTemplates.Shape(spec.options().getOrDefault(VmSpec.TENANT, ""), image, digest, spec.vcpus(), spec.memoryMiB(),
          diskBytes, Files.size(guest.imageDisk()), guest.config(), kvm, guestImage, rootMounted);
    } catch (IOException e) {
      throw new VmException("cannot read the guest image's files: " + e.getMessage(), e);
    }
  }

  /** Warms (or finds) the template for a spec: what {@link QemuTemplates#warm} asks for. */
  QemuTemplates.Saved templateFor(VmSpec spec) throws VmException {
    GuestImageBuild.ensure(config);
    Optional<String> problem = jailProblem();
    if (problem.isPresent()) throw new VmException("cannot jail QEMU: " + problem.get());
    boolean kvm = HostProbe.accel(config).kvm();
    Optional<String> kvmDevice = kvm ? QemuJail.deviceNumbers(Path.of("/dev/kvm")) : Optional.empty();
    GuestDisks guest = guestDisks(spec);
    boolean net;
    try {
      net = EgressPolicy.fromOptions(spec.options()).egress();
    } catch (IllegalArgumentException e) {
      throw new VmException("invalid network for a template: " + e.getMessage(), e);
    }
    // the template new sandboxes of the shape start from (a restart on a kept disk builds its own on first need)
    return templates.obtain(shape(spec, kvm, guest, config.defaultDiskMiB() * 1024L * 1024L, net, true),
        templateBuilder(spec, kvm, kvmDevice, net));
  }

  /** How {@link QemuTemplates} boots a template of {@code spec}'s shape: this driver's jail, cgroups and command line. */
  private QemuTemplates.Builder templateBuilder(VmSpec spec, boolean kvm, Optional<String> kvmDevice, boolean egress) {
    return (sandboxId, vmDir, memory, disk, uid, mounted) -> {
      Path run = vmDir.resolve("run");
      if (run.resolve("console.sock").toString().getBytes(StandardCharsets.UTF_8).length > MAX_SOCKET_PATH) {
        throw new VmException("the templates' directory " + config.templatesDir() + " is too long for a Unix socket path under it"
            + " (a node's data directory of at most about 40 characters fits)");
      }
      try {
        privateDir(vmDir);
        runDir(run, uid);
        AgentSecrets.create(vmDir);
      } catch (IOException e) {
        throw new VmException("cannot create the template's directory " + vmDir + ": " + e.getMessage(), e);
      }
      GuestDisks guest = guestDisks(spec);
      QemuJail.Disks d = disks(vmDir, guest, disk);
      VmSpec t = templateSpec(sandboxId, spec, vmDir);
      VmHandle handle = new VmHandle(DRIVER, sandboxId, 1, 0, 0, vmDir, run.resolve("agent.sock"), Map.of())
          .withExtra("qmpSocket", run.resolve("qmp.sock").toString())
          .withExtra("consoleSocket", run.resolve("console.sock").toString())
          .withExtra("consoleLog", vmDir.resolve("console.log").toString())
          .withExtra("consoleLogBytes", Long.toString(config.consoleLogBytes()))
          .withExtra("accel", kvm ? "kvm" : "tcg")
          .withExtra("uid", Long.toString(uid));
      // a template of egress sandboxes has their network device, backed by a passt of its own
      // that reaches nothing: the template's uid is allowed no destination at all
      Optional<QemuNetwork> network = egress
          ? Optional.of(new QemuNetwork(this.egress, sandboxId, 1, uid, NOWHERE, vmDir, run, egressCommentPrefix()))
          : Optional.empty();
      List<String> qemu = command(t, kvm, true, network, Optional.of(MemoryFile.TEMPLATE), mounted);
      List<String> launch = QemuJail.launch(tree().root(), tree().qemu(), run, config.kernel(), config.initramfs(), uid, kvmDevice,
          Optional.of(d), Optional.of(new QemuJail.Memory(memory, java.util.OptionalLong.empty())), qemu.subList(1, qemu.size()));
      long memoryLimit = (spec.memoryMiB() + (long) config.memoryOverheadMiB()) * 1024L * 1024L;
      return new QemuVm(handle, qemu, launch, new QemuVm.Limits(cgroups(), memoryLimit, spec.vcpus(), config.threadsLimit(),
          config.requireLimits() ? LIMITS : Set.of()), gate, network.orElse(null));
    };
  }

  /** A template's network: egress mode, every destination denied. */
  private static final EgressPolicy NOWHERE = new EgressPolicy(EgressPolicy.Mode.EGRESS, List.of(),
      List.of(EgressPolicy.parseDestination("0.0.0.0/0"), EgressPolicy.parseDestination("::/0")));

  /** What a guest's read-only devices hold: its image's block device (cached, shared) and its config disk's bytes. */
  private record GuestDisks(ImageRootfs.Rootfs rootfs, Path imageDisk, byte[] config) {}

  private GuestDisks guestDisks(VmSpec spec) throws VmException {
    ImageRootfs.Rootfs rootfs = rootfs(spec); // may pull or unpack
    Path image;
    try {
      image = imageDisks.ensure(rootfs.layersTopFirst());
    } catch (IOException e) {
      throw new VmException("cannot make the block device of sandbox " + spec.sandboxId() + "'s image: " + e.getMessage(), e);
    }
    byte[] text = rootfs.execDefaults().getBytes(StandardCharsets.UTF_8);
    if (text.length > MAX_CONFIG_BYTES) {
      throw new VmException("cannot write sandbox " + spec.sandboxId() + "'s config disk: the image's exec defaults take "
          + text.length + " bytes, over " + MAX_CONFIG_BYTES);
    }
    // a whole number of sectors; the guest drops the zero padding
    return new GuestDisks(rootfs, image, java.util.Arrays.copyOf(text, (text.length / 4096 + 1) * 4096));
  }

  /**
   * The guest's three disks: the image's (cached, linked into the VM's directory), the sandbox's
   * writable one (made on its first start here, kept; handed to the sandbox's uid, 0600), and this
   * incarnation's config disk (the image's exec defaults, root's 0644, in the VM's directory). A new
   * writable disk is a fresh ext4, or a copy of {@code from} (a template's disk at its save).
   */
  private QemuJail.Disks disks(VmSpec spec, Path dir, long uid, int diskMiB, GuestDisks guest, Optional<Path> from) throws VmException {
    Path disk = writableDisk(spec.sandboxId());
    try {
      NodeOnlyFiles.createPrivateDir(config.disksDir());
      if (!Files.exists(disk, LinkOption.NOFOLLOW_LINKS)) {
        if (from.isPresent()) {
          Path tmp = disk.resolveSibling(disk.getFileName() + ".tmp");
          Files.deleteIfExists(tmp);
          Ext4Disk.copySparse(from.get(), tmp);
          Files.move(tmp, disk, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } else {
          Ext4Disk.create(disk, diskMiB);
        }
      }
      if (!Files.isRegularFile(disk, LinkOption.NOFOLLOW_LINKS)) throw new IOException(disk + " is not a regular file");
      // QEMU (the sandbox's uid) opens it read-write; nobody else may (its range may have changed since)
      Files.setAttribute(disk, "unix:uid", (int) uid, LinkOption.NOFOLLOW_LINKS);
      Files.setAttribute(disk, "unix:gid", (int) uid, LinkOption.NOFOLLOW_LINKS);
      Files.setPosixFilePermissions(disk, PosixFilePermissions.fromString("rw-------"));
    } catch (IOException e) {
      throw new VmException("cannot make sandbox " + spec.sandboxId() + "'s writable disk " + disk + ": " + e.getMessage(), e);
    }
    return disks(dir, guest, disk);
  }

  /** The image disk linked into {@code dir}, the config disk written there, and {@code writable}. */
  private static QemuJail.Disks disks(Path dir, GuestDisks guest, Path writable) throws VmException {
    Path image;
    try {
      image = ImageDisks.linkInto(guest.imageDisk(), dir);
    } catch (IOException e) {
      throw new VmException("cannot link the image's block device into " + dir + ": " + e.getMessage(), e);
    }
    Path configDisk = dir.resolve("config.disk");
    try {
      Files.deleteIfExists(configDisk);
      Files.write(configDisk, guest.config(), java.nio.file.StandardOpenOption.CREATE_NEW);
      Files.setPosixFilePermissions(configDisk, PosixFilePermissions.fromString("rw-r--r--"));
    } catch (IOException e) {
      throw new VmException("cannot write the config disk in " + dir + ": " + e.getMessage(), e);
    }
    return new QemuJail.Disks(image, writable, configDisk);
  }

  /** What the config disk may hold: the image's Env is bounded by the image store; this is a backstop. */
  private static final int MAX_CONFIG_BYTES = 1 << 20;

  /** The root file system of {@code spec}: its image's, or the default image (a single layer, no defaults). */
  ImageRootfs.Rootfs rootfs(VmSpec spec) throws VmException {
    String image = spec.options().get(VmSpec.IMAGE);
    if (image == null || image.isEmpty()) {
      if (!Files.isDirectory(config.defaultRootfs())) {
        throw new VmException("no default image at " + config.defaultRootfs() + ": run guest-image/build-default-image.sh");
      }
      return new ImageRootfs.Rootfs(List.of(config.defaultRootfs()), java.util.Map.of(), "", "");
    }
    return images.resolve(image, spec.options().getOrDefault(VmSpec.IMAGE_OWNER, ""), spec.sandboxId());
  }

  /** The sandbox's writable disk on this node (node-only directory). */
  Path writableDisk(String sandboxId) {
    return config.disksDir().resolve(sandboxId + DISK_SUFFIX);
  }

  private static final String DISK_SUFFIX = ".disk";

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
  public void shutdown(Duration wait) {
    templates.shutdown(wait);
  }

  @Override
  public boolean fence(Duration wait) {
    return gate.close(wait);
  }

  @Override
  public void watchFreezes(dev.flotilla.vm.FreezeWatch watch) {
    gate.watch(watch);
  }

  @Override
  public Optional<Vm> adopt(VmHandle handle) {
    if (!DRIVER.equals(handle.driver()) || handle.pid() <= 0) return Optional.empty();
    if (!HostProbe.isSameProcess(handle.pid(), handle.startTime())) return Optional.empty();
    QemuVm vm = new QemuVm(handle, QemuNetwork.fromHandle(egress, handle).orElse(null));
    String template = handle.extra().get(TEMPLATE);
    if (template != null) {
      // a clone keeps its template on this node for as long as it runs, across node restarts
      templates.attached(template, handle.sandboxId());
      vm.exitFuture().whenComplete((x, e) -> templates.detached(template, handle.sandboxId()));
    }
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
   * Sandboxes with a writable disk here, and every holder of an id range (the node's drivers share
   * the table: a sandbox's range is freed once it is deleted or has moved away even on a node
   * without the process driver; releasing twice is harmless).
   */
  @Override
  public Set<String> sandboxesWithLocalState() {
    Set<String> out = new java.util.TreeSet<>();
    try {
      out.addAll(ids.holders().keySet());
    } catch (IOException e) {
      LOG.warn("cannot read the id range table: {}", e.getMessage());
    }
    try (java.util.stream.Stream<Path> s = Files.list(config.disksDir())) {
      s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(DISK_SUFFIX))
          .forEach(n -> out.add(n.substring(0, n.length() - DISK_SUFFIX.length())));
    } catch (IOException e) {
      // no disks yet
    }
    return out;
  }

  /**
   * Deletes the sandbox's writable disk and frees its id range (the caller has checked that no VM
   * of it runs here); its image may then be evicted.
   */
  @Override
  public void releaseSandbox(String sandboxId) {
    try {
      Path disk = writableDisk(sandboxId);
      if (!disk.getParent().equals(config.disksDir())) throw new IOException("sandbox id " + sandboxId + " names no disk of this node");
      Files.deleteIfExists(disk);
      Files.deleteIfExists(disk.resolveSibling(disk.getFileName() + ".tmp"));
    } catch (IOException e) {
      LOG.warn("sandbox {}: cannot delete its writable disk: {}", sandboxId, e.getMessage());
    }
    try {
      ids.release(sandboxId);
    } catch (IOException e) {
      LOG.warn("sandbox {}: cannot release its id range: {}", sandboxId, e.getMessage());
    }
    images.released(sandboxId);
  }

  /**
   * Reaps what is left of a VM: QEMU if it still runs (same pid and start time), then its cgroups
   * and its state directory, also when QEMU is long gone (adopt finds nothing then).
   */
  @Override
  public void reap(VmHandle handle) {
    if (!DRIVER.equals(handle.driver())) return;
    QemuVm vm = adopt(handle).map(QemuVm.class::cast).orElseGet(() -> QemuVm.gone(handle, QemuNetwork.fromHandle(egress, handle).orElse(null)));
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
  List<String> command(VmSpec spec, boolean kvm, boolean withDisks) {
    return command(spec, kvm, withDisks, Optional.empty());
  }

  /** As above, with the virtio-net device of an egress network (none: no network device at all). */
  List<String> command(VmSpec spec, boolean kvm, boolean withDisks, Optional<QemuNetwork> network) {
    return command(spec, kvm, withDisks, network, Optional.empty());
  }

  /**
   * A template's RAM: in its memory file, which a template maps shared (what the guest writes
   * lands in the file, which is then saved) and a clone privately, copy on write, waiting for the
   * template's saved state ({@code -incoming defer}). Both boot in template mode.
   */
  enum MemoryFile {
    TEMPLATE,
    CLONE
  }

  /** As above, with the guest's RAM in a template's memory file (see {@link MemoryFile}), of a template that mounts no root. */
  List<String> command(VmSpec spec, boolean kvm, boolean withDisks, Optional<QemuNetwork> network, Optional<MemoryFile> memory) {
    return command(spec, kvm, withDisks, network, memory, false);
  }

  /**
   * As above; {@code rootMounted}: the template's guest mounts its root at boot, as a cold boot does
   * ({@code flotilla.template=mounted}), else none of its disks ({@code flotilla.template=1}).
   */
  List<String> command(VmSpec spec, boolean kvm, boolean withDisks, Optional<QemuNetwork> network, Optional<MemoryFile> memory,
      boolean rootMounted) {
    // rootfstype=ramfs: the initramfs unpacks into ramfs, not a tmpfs capped at half of the RAM
    // the kernel has left while the initramfs itself still takes its share (a 256 MiB guest could
    // not unpack a 70 MB initramfs: its tmpfs filled). The guest's RAM bounds it all the same.
    StringBuilder append = new StringBuilder("console=ttyS0 quiet panic=-1 rootfstype=ramfs");
    if (withDisks) append.append(" flotilla.root=disk");
    long tsc = kvm ? 0 : HostProbe.tscKhz();
    if (tsc > 0) append.append(" tsc_early_khz=").append(tsc);
    network.ifPresent(n -> append.append(' ').append(n.kernelArg()));
    // the guest's init mounts no disk (or its root, with rootMounted) and its agent waits for a
    // clone's identity (QemuTemplates)
    if (memory.isPresent()) append.append(rootMounted ? " flotilla.template=mounted" : " flotilla.template=1");
    append.append(" flotilla.sandbox_id=").append(spec.sandboxId())
        .append(" flotilla.incarnation=").append(spec.incarnation());
    List<String> cmd = new ArrayList<>(List.of(
        config.qemuBinary(),
        "-name", "flotilla-" + spec.sandboxId() + "-" + spec.incarnation(),
        "-M", memory.isPresent() ? "microvm,pit=on,memory-backend=mem" : "microvm,pit=on",
        "-accel", kvm ? "kvm" : "tcg,tb-size=" + (memory.orElse(null) == MemoryFile.CLONE ? config.cloneTcgCacheMiB() : TCG_TB_SIZE_MIB)));
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
        // live resize of memory: microvm is virtio-mmio only and QEMU 7.2's virtio-mem needs PCI, so
        // the guest gives RAM back through the balloon, between the driver's floor and its boot size
        "-device", "virtio-balloon-device",
        "-chardev", "socket,id=qmp,path=" + QemuJail.RUN + "/qmp.sock,server=on,wait=off",
        "-mon", "chardev=qmp,mode=control"));
    if (withDisks) {
      // found by the guest's init by serial, not by probe order
      cmd.addAll(List.of(
          "-drive", "file=" + QemuJail.IMAGE_DISK + ",if=none,id=image,format=raw,readonly=on",
          "-device", "virtio-blk-device,drive=image,serial=fl-image",
          "-drive", "file=" + QemuJail.WRITABLE_DISK + ",if=none,id=disk,format=raw",
          "-device", "virtio-blk-device,drive=disk,serial=fl-disk",
          "-drive", "file=" + QemuJail.CONFIG_DISK + ",if=none,id=config,format=raw,readonly=on",
          "-device", "virtio-blk-device,drive=config,serial=fl-config"));
    }
    if (network.isPresent()) cmd.addAll(QemuNetwork.qemuArgs());
    if (memory.isPresent()) {
      cmd.addAll(List.of("-object", "memory-backend-file,id=mem,size=" + spec.memoryMiB() + "M,mem-path=" + QemuJail.MEMORY
          + ",share=" + (memory.get() == MemoryFile.TEMPLATE ? "on" : "off")));
      if (memory.get() == MemoryFile.CLONE) cmd.addAll(List.of("-incoming", "defer"));
    }
    return cmd;
  }
}
