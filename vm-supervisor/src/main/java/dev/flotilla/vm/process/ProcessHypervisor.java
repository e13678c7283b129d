package dev.flotilla.vm.process;

import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.ImageRootfs;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.SpawnGate;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.ids.IdRangeAllocator;
import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.oci.BundleConfig;
import dev.flotilla.vm.oci.OciRuntime;
import dev.flotilla.vm.oci.SeccompProfile;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code process} driver: each sandbox is an OCI container run by {@code runc}, with the
 * image as its root (overlay of the image's shared layers and the sandbox's own capped writable
 * layer), every namespace, its own 65536-id host range, Docker's default capabilities, no new
 * privileges, Podman's seccomp profile, masked /proc, read-only /sys, a minimal /dev and mandatory
 * memory, CPU and pids limits. The guest agent is the container's init (under tini), from a
 * read-only runtime at {@code /.fl} that the tenant cannot modify.
 *
 * <p>Not a VM: sandboxes share the host kernel. Offered only where all of it can be had (see
 * {@link HostFacts}); there is no degraded mode.
 */
public final class ProcessHypervisor implements Hypervisor {
  public static final String DRIVER = "process";
  private static final Logger log = LoggerFactory.getLogger(ProcessHypervisor.class);

  private final ProcessHypervisorConfig config;
  private final IdRangeAllocator ids;
  private final OciRuntime oci;
  private final ImageRootfs images;
  private final SandboxNetworks networks;
  private final SpawnGate gate = new SpawnGate();
  private volatile HostFacts facts;
  private volatile Map<String, Object> seccomp;

  /**
   * @param ids the node's allocator of sandbox id ranges, shared with its other drivers
   * @param images where the layers of a sandbox's image come from
   */
  public ProcessHypervisor(ProcessHypervisorConfig config, IdRangeAllocator ids, ImageRootfs images) {
    this.config = config;
    this.ids = ids;
    this.images = images;
    this.oci = new OciRuntime(config.ociRuntime(), config.stateRoot().resolve(".runc"));
    this.networks = new SandboxNetworks(config.network(), config.runRoot(), oci);
  }

  SandboxNetworks networks() {
    return networks;
  }

  /** The spec's network (options {@code network}, {@code network-allow}, {@code network-deny}). */
  static EgressPolicy policy(VmSpec spec) throws VmException {
    try {
      return EgressPolicy.fromOptions(spec.options());
    } catch (IllegalArgumentException e) {
      throw new VmException("invalid network for sandbox " + spec.sandboxId() + ": " + e.getMessage(), e);
    }
  }

  /** Only the default image. */
  public ProcessHypervisor(ProcessHypervisorConfig config, IdRangeAllocator ids) {
    this(config, ids, ImageRootfs.NONE);
  }

  /** With the host-wide allocator, keyed by its state root ({@link IdRangeAllocator#forNode}), only the default image. */
  public ProcessHypervisor(ProcessHypervisorConfig config) {
    this(config, IdRangeAllocator.forNode(config.stateRoot()));
  }

  /** The root file system of {@code spec}: its image's, or the default image (a single layer, no defaults). */
  ImageRootfs.Rootfs rootfs(VmSpec spec) throws VmException {
    String image = spec.options().get(VmSpec.IMAGE);
    if (image == null || image.isEmpty()) return new ImageRootfs.Rootfs(List.of(config.defaultRootfs()), Map.of(), "", "");
    return images.resolve(image, spec.options().getOrDefault(VmSpec.IMAGE_OWNER, ""), spec.sandboxId());
  }

  public ProcessHypervisorConfig config() {
    return config;
  }

  public IdRangeAllocator ids() {
    return ids;
  }

  OciRuntime oci() {
    return oci;
  }

  @Override
  public String driver() {
    return DRIVER;
  }

  HostFacts facts() {
    HostFacts f = facts;
    if (f == null) {
      synchronized (this) {
        f = facts;
        if (f == null) {
          f = HostFacts.probe(config, ids);
          if (!f.usable()) log.warn(f.why());
          facts = f;
        }
      }
    }
    return f;
  }

  @Override
  public HypervisorCapabilities capabilities() {
    HostFacts f = facts();
    boolean egress = f.usable() && networks.missing().isEmpty();
    return new HypervisorCapabilities("process", f.usable(), f.usable(),
        f.usable() ? (egress ? Set.of("memory", "cpu", "pids", "disk", "network-egress") : Set.of("memory", "cpu", "pids", "disk")) : Set.of(),
        f.missing());
  }

  /** Root inside the sandbox is this host uid (its range's start), once the sandbox has a range here. */
  public Optional<Long> sandboxRootHostUid(String sandboxId) {
    try {
      return ids.rangeOf(sandboxId).map(IdRangeAllocator.Range::hostStart);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public Vm prepare(VmSpec spec) throws VmException {
    HostFacts f = facts();
    if (!f.usable()) throw new VmException(f.why());
    if (policy(spec).egress()) {
      List<String> missing = networks.missing();
      if (!missing.isEmpty()) {
        throw new VmException("egress networking is not available on this host: " + String.join("; ", missing) + ". To fix: " + HostFacts.FIX);
      }
    }
    Path snapshot = null;
    ProcessSnapshots.Meta saved = null;
    String restoreFrom = spec.options().get(VmSpec.RESTORE_FROM);
    if (restoreFrom != null) {
      // checked before anything is made for the sandbox: a refused restore leaves nothing
      snapshot = Path.of(restoreFrom).toAbsolutePath().normalize();
      try {
        saved = ProcessSnapshots.readFor(snapshot, spec.sandboxId());
      } catch (IOException e) {
        throw new VmException("cannot restore sandbox " + spec.sandboxId() + ": " + e.getMessage(), e);
      }
      List<Path> inUse = mountsOfIncarnations(spec.sandboxId());
      if (!inUse.isEmpty()) {
        throw new VmException("cannot restore sandbox " + spec.sandboxId() + " from " + snapshot + ": its writable layer is in use by"
            + " an incarnation on this node (" + inUse + " mounted): stop and destroy it first");
      }
    }
    networks.sweepOnce();
    long base;
    try {
      NodeOnlyFiles.createPrivateDir(config.stateRoot());
      Path parent = config.runRoot().getParent();
      if (parent != null) NodeDirs.privateDir(parent, "rwx--x--x");
      NodeDirs.privateDir(config.runRoot(), "rwx--x--x");
      base = ids.acquire(spec.sandboxId()).hostStart();
      Path state = config.stateDirFor(spec.sandboxId(), spec.incarnation());
      NodeOnlyFiles.createPrivateDir(state);
      seccomp();
      runtimeMount();
    } catch (IOException | RuntimeException e) {
      throw new VmException("cannot prepare sandbox " + spec.sandboxId() + ": " + e.getMessage(), e);
    }
    if (snapshot != null) restoreLayer(spec.sandboxId(), snapshot, saved);
    return ProcessVm.prepared(this, spec, base);
  }

  /**
   * Makes the snapshot's disk the sandbox's writable layer on this node ({@link VmSpec#RESTORE_FROM}):
   * copied sparsely beside the layer's image and renamed over it, while the layer is not mounted
   * (unmounted here: {@link #prepare} has refused a restore while a root of it is mounted; a layer
   * still busy fails the unmount, which is never lazy). The
   * incarnation then boots afresh on it; its first mount shifts the files' owners into this node's
   * id range for the sandbox. The snapshot stays as it was: it can be restored again.
   */
  private void restoreLayer(String sandboxId, Path snapshot, ProcessSnapshots.Meta meta) throws VmException {
    String what = "cannot restore sandbox " + sandboxId + " from " + snapshot + ": ";
    WritableLayer layer = ProcessVm.Places.layerOf(config, sandboxId);
    try {
      layer.unmountNow();
    } catch (IOException e) {
      throw new VmException(what + "cannot unmount its writable layer " + layer.mountPoint() + ": " + e.getMessage(), e);
    }
    Path image = layer.image();
    Path tmp = image.resolveSibling(image.getFileName() + ".restore");
    try {
      Files.deleteIfExists(tmp);
      Ext4Disk.copySparse(snapshot.resolve(ProcessSnapshots.DISK), tmp);
      Files.setPosixFilePermissions(tmp, NodeOnlyFiles.FILE_MODE);
      Files.move(tmp, image, java.nio.file.StandardCopyOption.ATOMIC_MOVE, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    } catch (IOException e) {
      throw new VmException(what + "cannot copy its disk over the writable layer " + image + ": " + e.getMessage(), e);
    } finally {
      try {
        Files.deleteIfExists(tmp);
      } catch (IOException e) {
        log.warn("cannot delete {}: {}", tmp, e.getMessage());
      }
    }
    log.info("sandbox {}: its writable layer restored from {} (taken of incarnation {}, {} MiB); it boots afresh on it", sandboxId,
        snapshot, meta.incarnation(), meta.diskMiB());
  }

  /** Mount points of the sandbox's incarnations on this node (their roots and agent directories). */
  private List<Path> mountsOfIncarnations(String sandboxId) {
    List<Path> out = new ArrayList<>();
    for (Path mp : Mounts.mountPointsUnder(config.runRoot())) {
      Path inc = mp.getParent();
      if (inc != null && inc.getFileName().toString().matches(java.util.regex.Pattern.quote(sandboxId) + "-\\d+")) out.add(mp);
    }
    return out;
  }

  /** Podman's profile resolved for the sandbox's capabilities and this kernel, made once. */
  Map<String, Object> seccomp() throws IOException {
    Map<String, Object> s = seccomp;
    if (s == null) {
      String kernel = Files.readString(Path.of("/proc/sys/kernel/osrelease")).strip();
      s = SeccompProfile.fromPodman(config.seccompProfile(), BundleConfig.CAPABILITIES, kernel);
      seccomp = s;
    }
    return s;
  }

  /**
   * The runtime, bind-mounted read-only into the run root once, so that the sandbox's uid reaches it
   * whatever the modes of the directories above the runtime's own (a checkout under /root). Mounted
   * again when the runtime was rebuilt since.
   */
  synchronized Path runtimeMount() throws IOException {
    Path mp = config.runRoot().resolve("runtime");
    Path stamp = Path.of("runtime.properties");
    if (Mounts.isMountPoint(mp)) {
      if (sameFile(mp.resolve(stamp), config.runtimeDir().resolve(stamp))) return mp;
      Mounts.unmount(mp);
    }
    Files.createDirectories(mp);
    Mounts.run("mount", "--bind", config.runtimeDir().toString(), mp.toString());
    Mounts.run("mount", "-o", "remount,bind,ro,nosuid,nodev", mp.toString());
    return mp;
  }

  private static boolean sameFile(Path a, Path b) {
    try {
      return Files.readString(a).equals(Files.readString(b));
    } catch (IOException e) {
      return false;
    }
  }

  /** Host pids in a container's cgroup (from the pids hierarchy, which every usable host has). */
  List<Long> containerPids(String containerId) {
    var mount = facts().cgroups().mount(Cgroups.Controller.PIDS);
    if (mount.isEmpty()) return List.of();
    Path procs = mount.get().root().resolve(config.cgroupParent()).resolve(OciRuntime.requireId(containerId)).resolve("cgroup.procs");
    List<Long> out = new ArrayList<>();
    try {
      for (String l : Files.readAllLines(procs)) if (!l.isBlank()) out.add(Long.parseLong(l.strip()));
    } catch (IOException | NumberFormatException e) {
      return List.of();
    }
    return out;
  }

  SpawnGate gate() {
    return gate;
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
    networks.sweepOnce();
    ProcessVm.Places places = ProcessVm.Places.of(config, handle.sandboxId(), handle.incarnation());
    if (!Procfs.isSameProcess(handle.pid(), handle.startTime())) return notAdopted(places, handle);
    try {
      var st = oci.state(places.containerId());
      if (st.isEmpty() || !st.get().running()) return notAdopted(places, handle);
    } catch (IOException | RuntimeException e) {
      log.warn("sandbox {}: cannot read its container's state: {}", handle.sandboxId(), e.getMessage());
      return notAdopted(places, handle);
    }
    return Optional.of(ProcessVm.adopted(this, handle));
  }

  /** An incarnation that is not adopted keeps no network: its pasta is killed and its rules go. */
  private Optional<Vm> notAdopted(ProcessVm.Places places, VmHandle handle) {
    SandboxNetwork.load(networks, places, handle.sandboxId()).ifPresent(SandboxNetwork::close);
    return Optional.empty();
  }

  /** Kills and removes what is left of the handle's incarnation: container, runc, mounts, directories. */
  @Override
  public void reap(VmHandle handle) {
    if (!DRIVER.equals(handle.driver())) throw new IllegalArgumentException("not a process-driver VM: " + handle.driver());
    ProcessVm.reap(this, handle.sandboxId(), handle.incarnation(), handle);
  }

  /**
   * Kills and removes everything the process driver of the node whose state root this is left on
   * the host: its containers (with their processes and cgroups), the mounts under its run root and
   * its id ranges. For local clusters and test fixtures that throw a node's data away; a node never
   * calls it on itself.
   */
  public static void forgetAll(Path stateRoot) {
    ProcessHypervisorConfig c = ProcessHypervisorConfig.of(Path.of("/nonexistent"), Path.of("/nonexistent"), stateRoot);
    OciRuntime oci = new OciRuntime(c.ociRuntime(), stateRoot.resolve(".runc"));
    try {
      if (Files.isDirectory(stateRoot.resolve(".runc"))) {
        for (String id : oci.list()) oci.delete(id);
      }
    } catch (IOException | RuntimeException e) {
      log.warn("cannot remove the containers of {}: {}", stateRoot, e.getMessage());
    }
    for (Path mp : Mounts.mountPointsUnder(c.runRoot())) {
      try {
        Mounts.unmount(mp);
      } catch (IOException e) {
        log.warn("cannot unmount {}: {}", mp, e.getMessage());
      }
    }
    NodeDirs.deleteTree(c.runRoot());
    IdRangeAllocator ids = IdRangeAllocator.forNode(stateRoot);
    try {
      for (String sandbox : ids.holders().keySet()) ids.release(sandbox);
    } catch (IOException e) {
      log.warn("cannot release the id ranges of {}: {}", stateRoot, e.getMessage());
    }
  }

  @Override
  public Set<String> sandboxesWithLocalState() {
    Set<String> out = new TreeSet<>();
    try {
      out.addAll(ids.holders().keySet());
    } catch (IOException e) {
      log.warn("cannot read the id range table: {}", e.getMessage());
    }
    try (Stream<Path> s = Files.list(config.stateRoot())) {
      s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".disk"))
          .forEach(n -> out.add(n.substring(0, n.length() - ".disk".length())));
    } catch (IOException e) {
      // no state root yet: nothing held
    }
    return out;
  }

  @Override
  public void releaseSandbox(String sandboxId) {
    WritableLayer layer = ProcessVm.Places.layerOf(config, sandboxId);
    try {
      for (Path mp : Mounts.mountPointsUnder(config.runRoot())) {
        Path inc = mp.getParent();
        if (inc != null && inc.getFileName().toString().matches(java.util.regex.Pattern.quote(sandboxId) + "-\\d+")) Mounts.unmount(mp);
      }
      layer.unmount();
      Files.deleteIfExists(layer.image());
      Files.deleteIfExists(layer.mountPoint());
      ids.release(sandboxId);
      images.released(sandboxId);
    } catch (IOException e) {
      log.warn("sandbox {}: cannot release its node-local state: {}", sandboxId, e.getMessage());
    }
  }
}
