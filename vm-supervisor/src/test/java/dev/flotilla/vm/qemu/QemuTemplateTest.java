package dev.flotilla.vm.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.vm.AgentSecrets;
import dev.flotilla.vm.TemplateCatalog;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.ids.IdRangeAllocator;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * VM templates on real QEMU (TCG): one template is booted, warmed and saved, and two sandboxes
 * start as its clones. Each must come up as its own sandbox: its own identity, hostname, kernel
 * RNG, JVM random state, clock and writable disk, and the template's identity must no longer reach
 * its agent. One template build (a boot) and two clones carry every check.
 */
class QemuTemplateTest {
  private static final Duration CALL = Duration.ofSeconds(60);
  private static final String TENANT = "tenant-a";

  private Path base;
  private QemuHypervisor hv;
  private final List<Vm> vms = new ArrayList<>();
  private final List<AgentClient> agents = new ArrayList<>();

  @BeforeEach
  void setUp() throws Exception {
    base = Files.createTempDirectory("fl-qtpl");
    QemuConfig config = TestQemu.config(base.resolve("driver")).withTemplateCacheBytes(4L << 30);
    assumeTrue(config.imageBuilt(), "guest image not built in " + config.imageDir() + ": run guest-image/build.sh");
    assumeTrue(Files.isDirectory(config.defaultRootfs()), "no default image: run guest-image/build-default-image.sh");
    hv = TestQemu.hypervisor(config);
  }

  @AfterEach
  void tearDown() throws Exception {
    if (hv == null) return;
    hv.shutdown(Duration.ofSeconds(10));
    for (QemuTemplates.Saved s : hv.templateStore().saved()) {
      hv.ids().release(IdRangeAllocator.DRIVER_PREFIX + "template." + s.id());
    }
    TestQemu.tearDown(hv, base, vms, agents);
  }

  private Vm start(String id, long incarnation) throws Exception {
    Vm vm = hv.prepare(new VmSpec(id, incarnation, 1, 256, 0, base.resolve("vms/" + id + "-" + incarnation),
        Map.of(VmSpec.TENANT, TENANT)));
    vms.add(vm);
    vm.start(Duration.ofSeconds(60));
    return vm;
  }

  private AgentClient connect(Vm vm) {
    AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10));
    agents.add(c);
    return c;
  }

  @Test
  void clonesOfOneTemplateAreEachTheirOwnSandbox() throws Exception {
    long t0 = System.nanoTime();
    // built ahead of time (a sandbox's first need builds it in the background and boots cold)
    TemplateCatalog.Template warmed = hv.templates().orElseThrow().warm(new TemplateCatalog.WarmRequest(TENANT, "", 1, 256));
    assertEquals(0, warmed.clones());
    Vm a = start("clone-a", 1);
    long built = System.nanoTime();
    Vm b = start("clone-b", 3);
    long bStarted = System.nanoTime();
    String template = a.handle().extra().get(QemuHypervisor.TEMPLATE);
    assertTrue(template != null && !template.isEmpty(), "started from a template: " + a.handle().extra());
    assertEquals(template, b.handle().extra().get(QemuHypervisor.TEMPLATE), "one template serves one shape");
    assertEquals(warmed.id(), template, "the warmed one");

    GuestInfo ga = connect(a).handshake("clone-a", 1, CALL).get();
    GuestInfo gb = connect(b).handshake("clone-b", 3, CALL).get();
    long handshaken = System.nanoTime();
    System.out.printf("template build + first clone %d ms, second clone started in %d ms, both handshaken %d ms later%n",
        (built - t0) / 1_000_000, (bStarted - built) / 1_000_000, (handshaken - bStarted) / 1_000_000);

    // identity: each its own sandbox, hostname and JVM random state
    assertEquals("fl-clone-a", ga.hostname());
    assertEquals("fl-clone-b", gb.hostname());
    assertNotEquals(ga.randomId(), gb.randomId(), "the agents' generators were reseeded apart");
    AgentClient ca = agents.get(0);
    AgentClient cb = agents.get(1);
    TestAgent.Result ra = TestAgent.run(ca, "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION; hostname; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s");
    TestAgent.Result rb = TestAgent.run(cb, "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION; hostname; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s");
    long hostSeconds = System.currentTimeMillis() / 1000;
    String[] la = ra.output().split("\n");
    String[] lb = rb.output().split("\n");
    assertEquals("clone-a 1", la[0], ra.output());
    assertEquals("clone-b 3", lb[0], rb.output());
    assertEquals("fl-clone-a", la[1]);
    assertEquals("fl-clone-b", lb[1]);
    // the kernel's RNG: the template had read /dev/urandom, so without a reseed the clones' bytes match
    assertEquals(64, la[2].length(), ra.output());
    assertNotEquals(la[2], lb[2], "two clones read different /dev/urandom bytes");
    // the clock: set from the host's at the rebirth (date +%s has one-second steps, and the exec took a moment)
    assertTrue(Math.abs(Long.parseLong(la[3].trim()) - hostSeconds) <= 2, "clone a's clock " + la[3] + " vs host " + hostSeconds);
    assertTrue(Math.abs(Long.parseLong(lb[3].trim()) - hostSeconds) <= 2, "clone b's clock " + lb[3] + " vs host " + hostSeconds);

    // each runs in its own root over its own writable disk
    assertEquals(0, TestAgent.run(ca, "echo from-a > /only-a && sync").status().exitCode());
    TestAgent.Result seen = TestAgent.run(cb, "[ -e /only-a ] && echo shared || echo own; [ -d /opt/flotilla ] && echo initramfs || echo tenant-root");
    assertEquals("own\ntenant-root\n", seen.output(), "b sees nothing of a's disk, and runs in its image's root");

    // the template's identity no longer reaches a clone's agent, nor does a stale incarnation (one
    // connection at a time: QEMU bridges one host connection to the guest's serial port)
    ca.close();
    cb.close();
    QemuTemplates.Saved saved = hv.templateStore().saved().get(0);
    byte[] templateSecret = AgentSecrets.read(saved.dir());
    AgentClient asTemplate = AgentClients.connect(new AgentAddress(a.handle().agentSocket(),
        java.util.OptionalLong.of(Long.parseLong(a.handle().extra().get("uid"))), templateSecret), Duration.ofSeconds(10));
    agents.add(asTemplate);
    ExecutionException stale = assertThrows(ExecutionException.class,
        () -> asTemplate.handshake(saved.sandboxId(), 1, CALL).get());
    // refused for its secret: the clone's agent holds its own now
    assertTrue(stale.getCause().getMessage().contains("secret is wrong"), stale.getCause().getMessage());
    AgentClient older = AgentClients.connect(new AgentAddress(b.handle().agentSocket(),
        java.util.OptionalLong.of(Long.parseLong(b.handle().extra().get("uid"))), AgentSecrets.read(b.handle().stateDir())),
        Duration.ofSeconds(10));
    agents.add(older);
    assertThrows(ExecutionException.class, () -> older.handshake("clone-b", 2, CALL).get(), "incarnation 2 is stale for clone b");
    asTemplate.close();
    older.close();
    // and the node's own address still reaches it: a reconnect repeats the rebirth, taken as a plain handshake
    assertEquals("clone-a", connect(a).handshake("clone-a", 1, CALL).get().sandboxId());

    // the template on the host: saved, its QEMU gone, its memory root's and its group's, which the clones' QEMUs join
    assertEquals("rw-rw----", PosixFilePermissions.toString(Files.getPosixFilePermissions(saved.memory())));
    assertEquals(0, (Integer) Files.getAttribute(saved.memory(), "unix:uid"));
    assertEquals(saved.gid(), Integer.toUnsignedLong((Integer) Files.getAttribute(saved.memory(), "unix:gid")));
    assertFalse(qemuNamed("flotilla-" + saved.sandboxId() + "-1"), "the template's own QEMU ended once it was saved");
    long qemuA = a.pids().get(0);
    String status = Files.readString(Path.of("/proc/" + qemuA + "/status"), StandardCharsets.UTF_8);
    assertTrue(status.lines().anyMatch(l -> l.startsWith("Groups:") && l.contains(Long.toString(saved.gid()))), status);

    // the catalogue: the tenant's own, busy while clones run, gone once they end
    TemplateCatalog catalog = hv.templates().orElseThrow();
    List<TemplateCatalog.Template> mine = catalog.list(TENANT);
    assertEquals(1, mine.size());
    assertEquals(2, mine.get(0).clones());
    assertEquals(List.of(), catalog.list("tenant-b"), "another tenant sees none of them");
    assertThrows(TemplateCatalog.NotFound.class, () -> catalog.remove("tenant-b", template));
    assertThrows(TemplateCatalog.InUse.class, () -> catalog.remove(TENANT, template));
    a.stop(Duration.ofSeconds(5));
    b.stop(Duration.ofSeconds(5));
    assertTrue(b.exitFuture().isDone() && a.exitFuture().isDone());
    assertEquals(template, catalog.remove(TENANT, template).id());
    assertFalse(Files.exists(saved.dir()));
    assertTrue(hv.ids().rangeOf(IdRangeAllocator.DRIVER_PREFIX + "template." + template).isEmpty(), "its id range is free again");
  }

  @Test
  void aTemplateIsOneTenantsOneShape() {
    byte[] config = new byte[4096];
    QemuTemplates.Shape one = new QemuTemplates.Shape("t1", "", "", 1, 256, 32 << 20, 1 << 20, config, false, "g", true);
    assertEquals(one.key(), new QemuTemplates.Shape("t1", "", "", 1, 256, 32 << 20, 1 << 20, config.clone(), false, "g", true).key());
    assertNotEquals(one.key(), new QemuTemplates.Shape("t2", "", "", 1, 256, 32 << 20, 1 << 20, config, false, "g", true).key());
    assertNotEquals(one.key(), new QemuTemplates.Shape("t1", "", "", 2, 256, 32 << 20, 1 << 20, config, false, "g", true).key());
    assertNotEquals(one.key(), new QemuTemplates.Shape("t1", "", "", 1, 512, 32 << 20, 1 << 20, config, false, "g", true).key());
    assertNotEquals(one.key(), new QemuTemplates.Shape("t1", "", "", 1, 256, 64 << 20, 1 << 20, config, false, "g", true).key());
    assertNotEquals(one.key(), new QemuTemplates.Shape("t1", "", "", 1, 256, 32 << 20, 1 << 20, config, false, "other guest", true).key());
    byte[] otherDefaults = config.clone();
    otherDefaults[0] = 'x';
    assertNotEquals(one.key(), new QemuTemplates.Shape("t1", "", "", 1, 256, 32 << 20, 1 << 20, otherDefaults, false, "g", true).key());
    assertNotEquals(one.key(), new QemuTemplates.Shape("t1", "", "", 1, 256, 32 << 20, 1 << 20, config, false, "g", false).key(),
        "a template for kept disks (root mounted by each clone) is another template");
  }

  @Test
  void aRestartOnItsKeptDiskKeepsItsFilesWhateverTemplateServes() throws Exception {
    // new disks: copies of the disk of a template whose root was mounted before its save
    TemplateCatalog.Template warmed = hv.templates().orElseThrow().warm(new TemplateCatalog.WarmRequest(TENANT, "", 1, 256));
    Vm first = start("keep", 1);
    assertEquals(warmed.id(), first.handle().extra().get(QemuHypervisor.TEMPLATE));
    QemuTemplates.Saved mounted = hv.templateStore().saved().get(0);
    assertTrue(mounted.mounted() && Files.isRegularFile(mounted.disk()), "the warmed template keeps its disk: " + mounted);
    assertEquals(dev.flotilla.vm.process.Ext4Disk.allocatedBytes(mounted.disk()), mounted.diskAllocated(),
        "its size counts the disk as measured at the save");
    var templateDiskTime = Files.getLastModifiedTime(mounted.disk());
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(mounted.disk())));
    assertEquals(0, (Integer) Files.getAttribute(mounted.disk(), "unix:uid"), "root's: no clone's QEMU opens it");
    AgentClient c1 = connect(first);
    c1.handshake("keep", 1, CALL).get();
    assertEquals("/kept-1\n", TestAgent.run(c1, "echo one > /kept-1 && sync && ls /kept-*").output(),
        "incarnation 1 writes into its root, which holds nothing of the template's");
    first.stop(Duration.ofSeconds(10));
    Path disk = hv.writableDisk("keep");
    assertEquals(templateDiskTime, Files.getLastModifiedTime(mounted.disk()), "a clone never writes its template's disk");
    assertClean(disk);

    // a restart on the kept disk: never a clone of the template that mounted another disk's file
    // system (it would write that one's state into this disk); cold now, the template for kept disks
    // building meanwhile
    Vm second = start("keep", 2);
    assertEquals(null, second.handle().extra().get(QemuHypervisor.TEMPLATE), "no template for kept disks yet: cold");
    AgentClient c2 = connect(second);
    c2.handshake("keep", 2, CALL).get();
    assertEquals("one\n", TestAgent.run(c2, "cat /kept-1").output());
    second.stop(Duration.ofSeconds(10));
    org.awaitility.Awaitility.await().atMost(Duration.ofMinutes(3))
        .until(() -> hv.templateStore().saved().stream().anyMatch(t -> !t.mounted()));
    QemuTemplates.Saved forKept = hv.templateStore().saved().stream().filter(t -> !t.mounted()).findFirst().orElseThrow();
    assertFalse(Files.exists(forKept.disk()), "a template for kept disks keeps none");

    Vm third = start("keep", 3);
    assertEquals(forKept.id(), third.handle().extra().get(QemuHypervisor.TEMPLATE), "a clone of the template for kept disks");
    AgentClient c3 = connect(third);
    c3.handshake("keep", 3, CALL).get();
    assertEquals("one\nthree\n", TestAgent.run(c3, "echo three > /kept-3 && sync && cat /kept-1 /kept-3").output(),
        "incarnation 3 mounts the kept disk, with incarnation 1's file");
    third.stop(Duration.ofSeconds(10));
    assertClean(disk);
  }

  /** The ext4 file system of {@code disk} is sound: a copy, its journal replayed, checks clean. */
  private void assertClean(Path disk) throws Exception {
    Path copy = base.resolve("fsck-copy");
    Files.deleteIfExists(copy);
    dev.flotilla.vm.process.Ext4Disk.copySparse(disk, copy); // not 1 GiB of zeros
    Process replay = new ProcessBuilder("e2fsck", "-fy", copy.toString()).redirectErrorStream(true).start();
    String first = new String(replay.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    replay.waitFor();
    Process check = new ProcessBuilder("e2fsck", "-fn", copy.toString()).redirectErrorStream(true).start();
    String out = new String(check.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals(0, check.waitFor(), "the disk's file system is clean after its journal's replay: " + first + "\n---\n" + out);
    Files.delete(copy);
  }

  private static boolean qemuNamed(String name) throws Exception {
    try (Stream<Path> procs = Files.list(Path.of("/proc"))) {
      for (Path p : procs.filter(p -> p.getFileName().toString().matches("\\d+")).toList()) {
        try {
          String cmdline = new String(Files.readAllBytes(p.resolve("cmdline")), StandardCharsets.UTF_8).replace('\0', ' ');
          if (cmdline.contains("qemu") && cmdline.contains(" " + name + " ")) return true;
        } catch (java.io.IOException e) {
          // gone meanwhile
        }
      }
    }
    return false;
  }
}
