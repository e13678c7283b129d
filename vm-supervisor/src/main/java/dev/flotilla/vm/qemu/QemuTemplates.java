package dev.flotilla.vm.qemu;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.OutputSink;
import dev.flotilla.vm.AgentSecrets;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.TemplateCatalog;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.ids.IdRangeAllocator;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The qemu driver's VM templates, after Kata's VM templating: a VM of one shape (tenant, image,
 * vCPUs, memory, disk size, guest image, accelerator) is booted once with its RAM in a memory file
 * ({@code memory-backend-file,share=on}), its agent handshaken and warmed with an exec, then
 * stopped and its device state saved with QEMU's {@code x-ignore-shared} migration: a few dozen
 * KiB, the RAM being the file. A sandbox of that shape then starts as a clone: the same command
 * line with the file mapped privately ({@code share=off}: copy on write, the file is never
 * written through it) and the state loaded, running in a fraction of a second where a boot under
 * TCG takes seconds, and sharing the template's untouched pages with every other clone.
 *
 * <p>The guest runs in template mode, and its agent waits for the clone's first handshake, which
 * carries the clone's identity (a rebirth: sandbox id, incarnation, secret, hostname, the host's
 * clock and a fresh seed). Only then does the agent reseed the kernel's RNG and its own, set the
 * clock and serve. There are two kinds ({@link Shape#mounted}): a template for new sandboxes
 * mounts the root at boot ({@code flotilla.template=mounted}) from a fresh disk that it keeps as it
 * was at the save, and each new sandbox's disk is a copy of it, so that the clone mounts nothing;
 * a template for a restart on a kept disk mounts none of the disks ({@code flotilla.template=1})
 * and its clone mounts its own at the rebirth. A clone of the first kind never gets a kept disk:
 * its guest holds another disk's file system state, which it would write into that disk.
 *
 * <p>Templates are per tenant. QEMU 7.2 opens a memory file read-write even to map it privately
 * (its {@code rom=} property came with 8.2), so each clone's QEMU, jailed as its sandbox's uid,
 * joins the template's group to open it: a QEMU a guest broke out into could write the file
 * under its sibling clones. Keeping templates within a tenant keeps that within the tenant.
 *
 * <p>Layout, node-only under {@link QemuConfig#templatesDir()}: {@code <id>/} holds {@code memory}
 * (root's, the template's group's, 0660), {@code state} and {@code agent.secret} (root's, 0600),
 * {@code disk} for the first kind (root's, 0600), {@code template.properties}; a template being
 * built is {@code <id>.building} until its atomic rename. The template's QEMU is gone once it is
 * saved: killing or losing it never touches a clone. A template file is never written after its
 * save; one with clones on this node is never removed or evicted.
 */
final class QemuTemplates implements TemplateCatalog {

  private static final Logger LOG = LoggerFactory.getLogger(QemuTemplates.class);
  /** Changing what a template is made of (command line, guest protocol) changes every key. */
  private static final int VERSION = 1;
  private static final String PROPERTIES = "template.properties";
  private static final String BUILDING = ".building";
  /** A shape whose template failed boots cold for this long before the next attempt (a build costs a boot). */
  private static final Duration RETRY_AFTER = Duration.ofMinutes(10);
  private static final Duration BOOT_DEADLINE = Duration.ofMinutes(3);
  private static final Duration CALL = Duration.ofSeconds(30);

  /** The shape a template serves, everything that makes two guests' memory interchangeable. */
  record Shape(String tenant, String image, String imageDigest, int vcpus, int memoryMiB, long diskBytes, long imageDiskBytes,
      byte[] configDisk, boolean kvm, String guest, boolean mounted) {

    String key() {
      return HexFormat.of().formatHex(sha256(keyInput().getBytes(StandardCharsets.UTF_8))).substring(0, 16);
    }

    String keyInput() {
      StringBuilder b = new StringBuilder("v").append(VERSION).append('\n')
          .append(tenant).append('\n').append(imageDigest.isEmpty() ? image : imageDigest).append('\n')
          .append(vcpus).append('\n').append(memoryMiB).append('\n').append(diskBytes).append('\n').append(imageDiskBytes).append('\n')
          .append(HexFormat.of().formatHex(sha256(configDisk))).append('\n').append(kvm).append('\n').append(guest)
          .append('\n').append(mounted ? "root mounted before the save" : "root mounted by each clone");
      return b.toString();
    }
  }

  /**
   * A saved template on disk. {@code diskAllocated}: what its {@link #disk()} takes on the host,
   * measured once at the save (the file is never written after it); 0 without one.
   */
  record Saved(String id, Path dir, String tenant, String image, String imageDigest, int vcpus, int memoryMiB, int diskMiB,
      long gid, Instant created, boolean mounted, long diskAllocated) {
    Path memory() {
      return dir.resolve("memory");
    }

    /**
     * A template whose root is mounted ({@link Shape#mounted}): its writable disk as the guest left
     * it at the save, which each new clone's disk is a copy of (root's, 0600, never written).
     */
    Path disk() {
      return dir.resolve("disk");
    }

    Path state() {
      return dir.resolve("state");
    }

    /** The template's own sandbox id: what its agent answers to until a clone's rebirth. */
    String sandboxId() {
      return "tpl-" + id;
    }

    long bytes() {
      return sizeOf(memory()) + sizeOf(state()) + diskAllocated;
    }
  }

  private final QemuHypervisor driver;
  private final QemuConfig config;
  private final IdRangeAllocator ids;
  private final Map<String, Object> building = new ConcurrentHashMap<>();
  /** Template id to the sandboxes whose VMs on this node run from it. */
  private final Map<String, Set<String>> clones = new ConcurrentHashMap<>();
  private final Map<String, Instant> lastUsed = new ConcurrentHashMap<>();
  /** Shapes whose last build failed: when, and why. */
  private final Map<String, Map.Entry<Instant, String>> failed = new ConcurrentHashMap<>();
  private volatile boolean swept;
  /** Set when the node stops: no build starts any more. */
  private volatile boolean closed;
  /** The template VMs being built now, by template id. */
  private final Map<String, QemuVm> inBuild = new ConcurrentHashMap<>();

  QemuTemplates(QemuHypervisor driver) {
    this.driver = driver;
    this.config = driver.config();
    this.ids = driver.ids();
  }

  boolean enabled() {
    return config.templateCacheBytes() > 0;
  }

  // --------------------------------------------------------------------------------------------
  // TemplateCatalog
  // --------------------------------------------------------------------------------------------

  @Override
  public Template warm(WarmRequest request) throws VmException {
    if (!enabled()) throw new VmException("VM templates are off on this node (flotilla.node.drivers.qemu.template-cache = 0)");
    int vcpus = request.vcpus();
    int memory = request.memoryMiB();
    if (vcpus < 1) throw new VmException("a template needs at least 1 vCPU");
    if (memory < QemuConfig.MIN_MEMORY_MIB) throw new VmException("the qemu driver needs memory >= " + QemuConfig.MIN_MEMORY_MIB + " MiB");
    Map<String, String> options = new java.util.HashMap<>();
    options.put(VmSpec.TENANT, request.tenant());
    if (!request.image().isEmpty()) {
      options.put(VmSpec.IMAGE, request.image());
      options.put(VmSpec.IMAGE_OWNER, request.tenant());
    }
    VmSpec spec = new VmSpec("template-warm", 1, vcpus, memory, 0, config.templatesDir(), options);
    Saved s = driver.templateFor(spec);
    return view(s);
  }

  @Override
  public List<Template> list(String tenant) {
    List<Template> out = new ArrayList<>();
    for (Saved s : saved()) if (s.tenant().equals(tenant)) out.add(view(s));
    out.sort(Comparator.comparing(Template::lastUsed).reversed());
    return out;
  }

  @Override
  public Template remove(String tenant, String id) throws VmException {
    Saved s = saved().stream().filter(t -> t.id().equals(id) && t.tenant().equals(tenant)).findFirst()
        .orElseThrow(() -> new NotFound("no template " + id + " of yours on this node: `flotilla template ls` lists them"));
    synchronized (lock(s.id())) {
      int n = clonesOf(s.id());
      if (n > 0) throw new InUse("template " + id + " still has " + n + " sandbox(es) running from it on this node: it can go once they stop");
      Template view = view(s);
      delete(s);
      return view;
    }
  }

  private Template view(Saved s) {
    return new Template(s.id(), s.tenant(), s.image(), s.imageDigest(), s.vcpus(), s.memoryMiB(), s.diskMiB(), s.bytes(),
        s.created(), lastUsed.getOrDefault(s.id(), lastModified(s)), clonesOf(s.id()));
  }

  // --------------------------------------------------------------------------------------------
  // For the driver
  // --------------------------------------------------------------------------------------------

  /** The template of {@code shape}, built now (booted, warmed, saved) if there is none yet. */
  Saved obtain(Shape shape, Builder builder) throws VmException {
    sweepOnce();
    // short: the template VM's sockets live under <templates>/<id>.building/vm/run (108-byte sun_path)
    String id = shape.key();
    synchronized (lock(id)) {
      Optional<Saved> there = load(config.templatesDir().resolve(id));
      if (there.isPresent()) return there.get();
      Map.Entry<Instant, String> failure = failed.get(id);
      if (failure != null && failure.getKey().plus(RETRY_AFTER).isAfter(Instant.now())) {
        throw new VmException("its template failed to build at " + failure.getKey() + " (" + failure.getValue() + "); the next attempt is after "
            + failure.getKey().plus(RETRY_AFTER));
      }
      long t0 = System.nanoTime();
      Saved s;
      try {
        s = build(id, shape, builder);
      } catch (VmException | RuntimeException e) {
        failed.put(id, Map.entry(Instant.now(), String.valueOf(e.getMessage())));
        throw e;
      }
      failed.remove(id);
      LOG.info("template {} built in {} ms (tenant {}, image {}, {} vCPU, {} MiB, {})", id, (System.nanoTime() - t0) / 1_000_000,
          shape.tenant().isEmpty() ? "-" : shape.tenant(), shape.image().isEmpty() ? "default" : shape.image(), shape.vcpus(),
          shape.memoryMiB(), shape.mounted() ? "root mounted: for new disks" : "root mounted by each clone: for kept disks");
      evict(id);
      return s;
    }
  }

  /**
   * The template of {@code shape} for a VM of {@code sandboxId}, attached to it (see
   * {@link #attached}), if it is built; otherwise empty, with the reason given to {@code cold}, and
   * its build started in the background (first need), so that the next VM of the shape starts from
   * it. This VM boots cold meanwhile: a build costs a boot, and the caller's start deadline is for
   * its own VM.
   */
  Optional<Saved> acquire(Shape shape, Builder builder, String sandboxId, java.util.function.Consumer<String> cold) {
    sweepOnce();
    String id = shape.key();
    Object lock = lock(id);
    synchronized (lock) {
      Optional<Saved> there = load(config.templatesDir().resolve(id));
      if (there.isPresent()) {
        attached(id, sandboxId);
        return there;
      }
    }
    Map.Entry<Instant, String> failure = failed.get(id);
    if (failure != null && failure.getKey().plus(RETRY_AFTER).isAfter(Instant.now())) {
      cold.accept("its template failed to build at " + failure.getKey() + " (" + failure.getValue() + "); the next attempt is after "
          + failure.getKey().plus(RETRY_AFTER));
      return Optional.empty();
    }
    if (closed) {
      cold.accept("the node is stopping");
      return Optional.empty();
    }
    if (backgroundBuilds.add(id)) {
      BUILDER.execute(() -> {
        try {
          obtain(shape, builder);
        } catch (VmException | RuntimeException e) {
          LOG.warn("template {} could not be built: {}", id, e.getMessage());
        } finally {
          backgroundBuilds.remove(id);
        }
      });
    }
    cold.accept("its template (" + id + ") is being built: later sandboxes of its shape start from it");
    return Optional.empty();
  }

  private final Set<String> backgroundBuilds = ConcurrentHashMap.newKeySet();

  /** One template build at a time in the background: each is a boot, which competes with the sandboxes' own. */
  private static final java.util.concurrent.ExecutorService BUILDER = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
    Thread t = new Thread(r, "qemu-template-builder");
    t.setDaemon(true);
    return t;
  });

  /** A VM of {@code sandboxId} starts from template {@code id}: it stays while the VM runs. */
  void attached(String id, String sandboxId) {
    clones.computeIfAbsent(id, k -> ConcurrentHashMap.newKeySet()).add(sandboxId);
    lastUsed.put(id, Instant.now());
    try {
      Files.setLastModifiedTime(config.templatesDir().resolve(id).resolve(PROPERTIES), FileTime.from(Instant.now()));
    } catch (IOException ignored) {
      // the last use is kept in memory too; the file only carries it across restarts
    }
  }

  /** The VM of {@code sandboxId} that started from template {@code id} has ended. */
  void detached(String id, String sandboxId) {
    Set<String> s = clones.get(id);
    if (s != null) s.remove(sandboxId);
  }

  int clonesOf(String id) {
    Set<String> s = clones.get(id);
    return s == null ? 0 : s.size();
  }

  /** Boots the template VM of a shape: what the driver knows how to do (jail, disks, command line). */
  interface Builder {
    /**
     * A prepared, unstarted VM in {@code vmDir} with its RAM in {@code memory} ({@code share=on}), in
     * template mode: with its root mounted at boot from {@code disk} when {@code mounted}, else
     * mounting none of its disks.
     */
    QemuVm prepareTemplateVm(String sandboxId, Path vmDir, Path memory, Path disk, long uid, boolean mounted) throws VmException;
  }

  private Saved build(String id, Shape shape, Builder builder) throws VmException {
    Path root = config.templatesDir();
    Path dir;
    try {
      NodeOnlyFiles.createPrivateDir(root);
      // one builder per shape (the caller holds its lock); what a crashed build left is swept first
      dir = root.resolve(id + BUILDING);
      if (Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) sweep(dir);
      Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(NodeOnlyFiles.DIR_MODE));
    } catch (IOException e) {
      throw new VmException("cannot make a template directory in " + root + ": " + e.getMessage(), e);
    }
    String holder = IdRangeAllocator.DRIVER_PREFIX + "template." + id;
    QemuVm vm = null;
    Path diskAtSave = null;
    boolean done = false;
    try {
      long uid;
      try {
        uid = ids.acquire(holder).hostStart();
      } catch (IOException e) {
        throw new VmException("no host uid for a template: " + e.getMessage(), e);
      }
      Path memory = dir.resolve("memory");
      Path disk = dir.resolve("disk");
      try {
        // QEMU (the template's uid) sizes and maps the memory file. The disk is sized like the
        // clones' so the guest sees the same device: a fresh ext4 that a template with its root
        // mounted writes as a sandbox would (its clones' disks are copies of it), else a stand-in
        // the template never mounts (clones mount their own).
        Files.createFile(memory);
        own(memory, uid, uid, "rw-------");
        if (shape.mounted()) {
          dev.flotilla.vm.process.Ext4Disk.create(disk, (int) (shape.diskBytes() >> 20));
        } else {
          try (RandomAccessFile f = new RandomAccessFile(disk.toFile(), "rw")) {
            f.setLength(shape.diskBytes());
          }
        }
        own(disk, uid, uid, "rw-------");
      } catch (IOException e) {
        throw new VmException("cannot make the template's files in " + dir + ": " + e.getMessage(), e);
      }
      Saved s = new Saved(id, dir, shape.tenant(), shape.image(), shape.imageDigest(), shape.vcpus(), shape.memoryMiB(),
          (int) (shape.diskBytes() >> 20), uid, Instant.now(), shape.mounted(), 0);
      if (closed) throw new VmException("the node is stopping");
      vm = builder.prepareTemplateVm(s.sandboxId(), dir.resolve("vm"), memory, disk, uid, shape.mounted());
      inBuild.put(id, vm);
      if (closed) throw new VmException("the node is stopping");
      vm.start(BOOT_DEADLINE);
      warm(vm, s.sandboxId(), shape.mounted());
      vm.saveState(s.state(), Duration.ofSeconds(60));
      if (shape.mounted()) {
        // Now, with the guest stopped and QEMU's block layer flushed and let go by the migration:
        // the disk as the saved memory knows it. Nothing may write it after this.
        try {
          // QEMU holds the file open: only a QEMU the guest broke into could have resized it, and
          // every new sandbox of the tenant would get a copy
          long size = Files.size(disk);
          if (size != shape.diskBytes()) {
            throw new VmException("the template's disk is " + size + " bytes, not the " + shape.diskBytes() + " it was made with: not kept");
          }
          Path kept = dir.resolve("disk.kept");
          dev.flotilla.vm.process.Ext4Disk.copySparse(disk, kept);
          own(kept, 0, 0, "rw-------");
          diskAtSave = kept;
          s = new Saved(s.id(), s.dir(), s.tenant(), s.image(), s.imageDigest(), s.vcpus(), s.memoryMiB(), s.diskMiB(), s.gid(),
              s.created(), s.mounted(), Math.max(dev.flotilla.vm.process.Ext4Disk.allocatedBytes(kept), 0));
        } catch (IOException e) {
          throw new VmException("cannot keep the template's disk as it was at its save: " + e.getMessage(), e);
        }
      }
      byte[] secret;
      try {
        secret = AgentSecrets.read(vm.handle().stateDir());
      } catch (IOException e) {
        throw new VmException("cannot read the template agent's secret: " + e.getMessage(), e);
      }
      vm.stop(Duration.ofSeconds(5));
      vm.destroy();
      vm = null;
      try {
        Files.delete(disk);
        if (diskAtSave != null) Files.move(diskAtSave, s.disk(), StandardCopyOption.ATOMIC_MOVE);
        // from now on nobody writes it: root's, read-write for the template's group (see the class comment)
        own(memory, 0, uid, "rw-rw----");
        own(s.state(), 0, 0, "rw-------");
        AgentSecrets.write(dir, secret);
        writeProperties(s);
        Files.move(dir, root.resolve(id), StandardCopyOption.ATOMIC_MOVE);
      } catch (IOException e) {
        throw new VmException("cannot keep the template in " + root + ": " + e.getMessage(), e);
      }
      done = true;
      return load(root.resolve(id)).orElseThrow(() -> new VmException("template " + id + " vanished after its save"));
    } finally {
      inBuild.remove(id);
      if (vm != null) {
        vm.kill();
        vm.stop(Duration.ofSeconds(1));
        vm.destroy();
      }
      if (!done) {
        QemuJail.deleteTree(dir);
        try {
          ids.release(holder);
        } catch (IOException e) {
          LOG.warn("cannot release the id range of a template that failed: {}", e.getMessage());
        }
      }
    }
  }

  /**
   * Handshakes the template's agent (it takes this handshake's secret as its own, which its clones
   * then present) and runs a few execs, so that the classes and code paths of a first exec are
   * loaded in the memory every clone starts from: a template saved before its first handshake gives
   * clones a first handshake of seconds under TCG. A template whose root is mounted runs them in
   * the tenant's image, which need not have {@code true}: its shell's "not found" (127) or "not
   * executable" (126) warms the same path.
   */
  private static void warm(QemuVm vm, String sandboxId, boolean mounted) throws VmException {
    long until = System.nanoTime() + BOOT_DEADLINE.toNanos();
    Exception last = null;
    while (System.nanoTime() < until) {
      if (vm.exitFuture().isDone()) {
        // the guest's own words go to the node's log for the operator, not into the error a client reads
        LOG.warn("template VM {} ended while booting; the end of its console:\n{}", sandboxId,
            ConsoleLog.tail(Path.of(vm.handle().extra().getOrDefault("consoleLog", vm.handle().stateDir().resolve("console.log").toString())), 4096));
        throw new VmException("the template VM ended while booting: " + vm.exitFuture().join().reason());
      }
      try (AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(5))) {
        c.handshake(sandboxId, 1, Duration.ZERO, CALL).get(CALL.toMillis(), TimeUnit.MILLISECONDS);
        for (int i = 0; i < 3; i++) {
          String execId = "warm-" + i;
          try {
            c.exec(ExecRequest.of(execId, "true"), DISCARD, CALL).get(CALL.toMillis(), TimeUnit.MILLISECONDS);
          } catch (java.util.concurrent.ExecutionException e) {
            // the agent answered, and refused: in the tenant's root, the image's exec defaults (its
            // user, its working directory) may refuse it as they would a sandbox's exec. The path up
            // to the refusal is warm; another try would be refused the same way.
            if (!mounted || !(e.getCause() instanceof dev.flotilla.agent.protocol.client.AgentException refused)) throw e;
            LOG.info("template VM {}: its warm-up exec was refused in the image's root ({}): saved without it", sandboxId,
                refused.getMessage());
            break;
          }
          var exit = c.waitProcess(execId, CALL).get(CALL.toMillis(), TimeUnit.MILLISECONDS);
          boolean warmed = exit.exitCode() == 0 || (mounted && (exit.exitCode() == 126 || exit.exitCode() == 127));
          if (!warmed) throw new VmException("the template's warm-up exec exited with " + exit.exitCode());
        }
        c.ping(CALL).get(CALL.toMillis(), TimeUnit.MILLISECONDS);
        c.close(); // one host at a time on the agent's port
        // The save announced, on a connection of its own (a second handshake starts a new host
        // session): the agent collects its heap before it answers, so that no clone begins with
        // a collection (GuestAgent#beforePause).
        try (AgentClient announce = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(5))) {
          announce.handshake(sandboxId, 1, Duration.ZERO, true, CALL).get(CALL.toMillis(), TimeUnit.MILLISECONDS);
        }
        return;
      } catch (VmException e) {
        throw e;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new VmException("interrupted warming a template", e);
      } catch (Exception e) {
        last = e;
        try {
          Thread.sleep(100);
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw new VmException("interrupted warming a template", ie);
        }
      }
    }
    throw new VmException("the template VM's agent did not answer within " + BOOT_DEADLINE + (last == null ? "" : ": " + last));
  }

  private static final OutputSink DISCARD = new OutputSink() {
    @Override
    public void onData(Channel channel, byte[] data, Runnable release) {
      release.run();
    }

    @Override
    public void onEnd(Channel channel) {}
  };

  /**
   * The node stops: no build starts any more, and the template VMs being built are killed (the
   * builds then remove what they left; a build whose JVM ends first is swept at the next start).
   * Returns once those QEMUs have exited, or after {@code wait}.
   */
  void shutdown(Duration wait) {
    closed = true;
    List<QemuVm> vms = new ArrayList<>(inBuild.values());
    for (QemuVm vm : vms) {
      LOG.info("the node stops: ending the build of template VM {}", vm.handle().sandboxId());
      vm.kill();
    }
    long until = System.nanoTime() + wait.toNanos();
    for (QemuVm vm : vms) {
      try {
        vm.exitFuture().get(Math.max(until - System.nanoTime(), 0), TimeUnit.NANOSECONDS);
      } catch (Exception e) {
        LOG.warn("template VM {} did not exit within {}", vm.handle().sandboxId(), wait);
      }
    }
  }

  /** Evicts the least recently used templates without clones here until they fit the cache (never {@code keep}). */
  private void evict(String keep) {
    List<Saved> all = new ArrayList<>(saved());
    long total = all.stream().mapToLong(Saved::bytes).sum();
    all.sort(Comparator.comparing(s -> lastUsed.getOrDefault(s.id(), lastModified(s))));
    for (Saved s : all) {
      if (total <= config.templateCacheBytes()) return;
      if (s.id().equals(keep) || clonesOf(s.id()) > 0) continue;
      synchronized (lock(s.id())) {
        if (clonesOf(s.id()) > 0) continue;
        LOG.info("template {} evicted (least recently used; templates hold {} MiB, the cache {} MiB)", s.id(), total >> 20,
            config.templateCacheBytes() >> 20);
        total -= s.bytes();
        delete(s);
      }
    }
  }

  private void delete(Saved s) {
    QemuJail.deleteTree(s.dir());
    lastUsed.remove(s.id());
    try {
      ids.release(IdRangeAllocator.DRIVER_PREFIX + "template." + s.id());
    } catch (IOException e) {
      LOG.warn("cannot release template {}'s id range: {}", s.id(), e.getMessage());
    }
  }

  /**
   * Once per driver: removes what builds that did not finish left (a node that died mid-build),
   * ending their QEMUs first.
   */
  private void sweepOnce() {
    if (swept) return;
    synchronized (this) {
      if (swept) return;
      swept = true;
      try (Stream<Path> s = Files.list(config.templatesDir())) {
        for (Path p : s.toList()) {
          if (p.getFileName().toString().endsWith(BUILDING)) sweep(p);
        }
      } catch (IOException e) {
        // no templates yet
      }
    }
  }

  /** Ends the QEMU of an unfinished build, if one runs, and removes what it left. */
  private void sweep(Path building) {
    try {
      driver.reap(VmHandle.load(building.resolve("vm")));
    } catch (IOException | RuntimeException e) {
      // no QEMU was started (or its handle is unreadable): only files remain
    }
    QemuJail.deleteTree(building);
    String name = building.getFileName().toString();
    try {
      ids.release(IdRangeAllocator.DRIVER_PREFIX + "template." + name.substring(0, name.length() - BUILDING.length()));
    } catch (IOException e) {
      LOG.warn("cannot release the id range of an unfinished template: {}", e.getMessage());
    }
  }

  /** Every finished template here. */
  List<Saved> saved() {
    List<Saved> out = new ArrayList<>();
    try (Stream<Path> s = Files.list(config.templatesDir())) {
      for (Path p : s.toList()) {
        if (p.getFileName().toString().endsWith(BUILDING)) continue;
        load(p).ifPresent(out::add);
      }
    } catch (IOException e) {
      // no templates yet
    }
    return out;
  }

  /** The template in {@code dir}, if it is a complete one. */
  Optional<Saved> load(Path dir) {
    Path file = dir.resolve(PROPERTIES);
    if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) return Optional.empty();
    Properties p = new Properties();
    try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      p.load(r);
      return Optional.of(new Saved(dir.getFileName().toString(), dir, p.getProperty("tenant", ""), p.getProperty("image", ""),
          p.getProperty("imageDigest", ""), Integer.parseInt(p.getProperty("vcpus")), Integer.parseInt(p.getProperty("memoryMiB")),
          Integer.parseInt(p.getProperty("diskMiB")), Long.parseLong(p.getProperty("gid")),
          Instant.ofEpochMilli(Long.parseLong(p.getProperty("created"))), Boolean.parseBoolean(p.getProperty("rootMounted", "false")),
          Long.parseLong(p.getProperty("diskAllocatedBytes", "0"))));
    } catch (IOException | RuntimeException e) {
      LOG.warn("template {} is unreadable ({}): ignored", dir.getFileName(), e.toString());
      return Optional.empty();
    }
  }

  private static void writeProperties(Saved s) throws IOException {
    Properties p = new Properties();
    p.setProperty("tenant", s.tenant());
    p.setProperty("image", s.image());
    p.setProperty("imageDigest", s.imageDigest());
    p.setProperty("vcpus", Integer.toString(s.vcpus()));
    p.setProperty("memoryMiB", Integer.toString(s.memoryMiB()));
    p.setProperty("diskMiB", Integer.toString(s.diskMiB()));
    p.setProperty("gid", Long.toString(s.gid()));
    p.setProperty("created", Long.toString(s.created().toEpochMilli()));
    p.setProperty("rootMounted", Boolean.toString(s.mounted()));
    p.setProperty("diskAllocatedBytes", Long.toString(s.diskAllocated()));
    Path file = s.dir().resolve(PROPERTIES);
    try (Writer w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
      p.store(w, "a Flotilla VM template (node-only)");
    }
    Files.setPosixFilePermissions(file, NodeOnlyFiles.FILE_MODE);
  }

  private Object lock(String id) {
    return building.computeIfAbsent(id, k -> new Object());
  }

  private static Instant lastModified(Saved s) {
    try {
      return Files.getLastModifiedTime(s.dir().resolve(PROPERTIES)).toInstant();
    } catch (IOException e) {
      return s.created();
    }
  }

  private static void own(Path p, long uid, long gid, String mode) throws IOException {
    Files.setAttribute(p, "unix:uid", (int) uid, LinkOption.NOFOLLOW_LINKS);
    Files.setAttribute(p, "unix:gid", (int) gid, LinkOption.NOFOLLOW_LINKS);
    Files.setPosixFilePermissions(p, PosixFilePermissions.fromString(mode));
  }

  private static long sizeOf(Path p) {
    try {
      return Files.size(p);
    } catch (IOException e) {
      return 0;
    }
  }

  private static byte[] sha256(byte[] b) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(b);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
