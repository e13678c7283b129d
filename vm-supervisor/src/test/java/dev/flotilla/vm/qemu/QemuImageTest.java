package dev.flotilla.vm.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.vm.ImageRootfs;
import dev.flotilla.vm.TemplateCatalog;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A real microVM on an OCI image built here (a layer of the test's own over the default busybox
 * image, with a whiteout): the guest's root is the image's erofs block device under the sandbox's
 * own capped ext4 disk, the agent runs every process inside it with the image's Env, WorkingDir and
 * User. Two boots of one sandbox (TCG: seconds each) carry every check: what the second boot finds
 * is what the first left on the writable disk.
 */
class QemuImageTest {
  private static final Duration BOOT = Duration.ofSeconds(90);
  private static final String ID = "img-a";
  private static final int DISK_MIB = 32;

  private Path base;
  private QemuHypervisor hv;
  private final List<Vm> vms = new ArrayList<>();
  private final List<AgentClient> agents = new ArrayList<>();
  private final List<String> released = new ArrayList<>();
  private ImageRootfs images;

  @BeforeEach
  void setUp() throws Exception {
    base = Files.createTempDirectory("fl-qimage");
    QemuConfig config = TestQemu.config(base.resolve("driver"));
    assumeTrue(config.imageBuilt(), "guest image not built in " + config.imageDir() + ": run guest-image/build.sh");
    assumeTrue(Files.isDirectory(config.defaultRootfs()), "no default image: run guest-image/build-default-image.sh");
    Path app = imageLayer(base.resolve("layers/app"));
    images = new ImageRootfs() {
      @Override
      public Rootfs resolve(String image, String owner, String sandboxId) {
        assertEquals("test/app@sha256:0123", image);
        return new Rootfs(List.of(app, config.defaultRootfs()), Map.of("GREETING", "hello from the image's Env",
            "PATH", "/usr/local/bin:/bin:/usr/bin"), "/app", "app");
      }

      @Override
      public void released(String sandboxId) {
        released.add(sandboxId);
      }
    };
    hv = new QemuHypervisor(config, TestQemu.ids(config.stateRoot()), images);
  }

  /**
   * The image's own layer: files, its user, its working directory, a whiteout of busybox's vi, and
   * an attack on the guest's boot: its /proc and /tmp are links into the initramfs the agent runs
   * from (followed, the mounts of /proc and /tmp would cover the agent's runtime and tools).
   */
  private static Path imageLayer(Path layer) throws Exception {
    Files.createDirectories(layer.resolve("app"));
    Files.createDirectories(layer.resolve("etc"));
    Files.createDirectories(layer.resolve("bin"));
    Files.writeString(layer.resolve("app/hello.txt"), "a file of the image\n");
    Files.writeString(layer.resolve("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/app:/bin/sh\n");
    Files.writeString(layer.resolve("etc/group"), "root:x:0:\napp:x:1001:\n");
    run("mknod", layer.resolve("bin/vi").toString(), "c", "0", "0"); // overlayfs' whiteout: vi is gone
    run("chown", "-R", "1000:1001", layer.resolve("app").toString());
    Files.createSymbolicLink(layer.resolve("proc"), Path.of("/opt/flotilla"));
    Files.createSymbolicLink(layer.resolve("tmp"), Path.of("/sbin"));
    return layer;
  }

  @AfterEach
  void tearDown() throws Exception {
    hv.shutdown(Duration.ofSeconds(10));
    for (QemuTemplates.Saved s : hv.templateStore().saved()) {
      hv.ids().release(dev.flotilla.vm.ids.IdRangeAllocator.DRIVER_PREFIX + "template." + s.id());
    }
    TestQemu.tearDown(hv, base, vms, agents);
  }

  private AgentClient boot(long incarnation) throws Exception {
    Vm vm = hv.prepare(new VmSpec(ID, incarnation, 1, 256, 0, base.resolve("vms/" + ID + "-" + incarnation),
        Map.of(VmSpec.IMAGE, "test/app@sha256:0123", VmSpec.DISK_MIB, Integer.toString(DISK_MIB))));
    vms.add(vm);
    vm.start(Duration.ofSeconds(60));
    AgentClient agent = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10));
    agents.add(agent);
    agent.handshake(ID, incarnation, BOOT).get();
    return agent;
  }

  @Test
  void theGuestRunsTheImageAsItsRootOverItsOwnCappedDisk() throws Exception {
    AgentClient agent = boot(1);
    Path imageDisk = base.resolve("vms/" + ID + "-1/image" + ImageDisks.SUFFIX);
    Path writable = hv.writableDisk(ID);
    String imageDigest = sha256(imageDisk);
    long uid = hv.ids().rangeOf(ID).orElseThrow().hostStart();

    // on the host: the image's disk is root's, read-only for everyone else, shared through the cache
    assertEquals("rw-r--r--", PosixFilePermissions.toString(Files.getPosixFilePermissions(imageDisk)));
    assertEquals(0, (Integer) Files.getAttribute(imageDisk, "unix:uid"));
    assertEquals(2, ImageDisks.links(imageDisk), "the cache's file and this VM's link");
    // the writable disk is the sandbox's uid's alone, capped by its size
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(writable)));
    assertEquals(uid, Integer.toUnsignedLong((Integer) Files.getAttribute(writable, "unix:uid", LinkOption.NOFOLLOW_LINKS)));
    assertEquals(DISK_MIB * 1024L * 1024L, Files.size(writable));

    // the image's files, Env, WorkingDir and User; its whiteout applied
    TestAgent.Result r = TestAgent.run(agent,
        "cat /app/hello.txt; echo \"$GREETING\"; pwd; id -u; id -g; id -G; [ -e /bin/vi ] && echo vi || echo no-vi; [ -d /opt/flotilla ] && echo initramfs || echo own-root");
    assertEquals(0, r.status().exitCode(), r.output());
    assertEquals("a file of the image\nhello from the image's Env\n/app\n1000\n1001\n1001\nno-vi\nown-root\n", r.output(),
        "the image's root, not the initramfs' (which has /opt/flotilla)");
    // the image's /proc and /tmp links were not followed: the guest booted (its agent answers from
    // the initramfs' /opt/flotilla), and the tenant has a real /proc and /tmp of its own
    TestAgent.Result mounts = exec(agent, "root", "/", "[ -L /proc ] || [ -L /tmp ] && echo link; cat /proc/self/comm; "
        + "echo x >/tmp/x && ls /tmp");
    assertEquals("cat\nx\n", mounts.output(), "the tenant's /proc (a procfs) and /tmp are its own directories");
    // an exec's own user and working directory override the image's
    TestAgent.Result asRoot = exec(agent, "root", "/", "id -u; pwd; cat /etc/passwd | head -1");
    assertEquals("0\n/\nroot:x:0:0:root:/root:/bin/sh\n", asRoot.output());

    // a terminal in the tenant's root (its own devpts), for the image's user, with the agent's JNA from the initramfs
    TestAgent.Result tty = TestAgent.runOnTerminal(agent, "", 25, 90, "tty; stty size; echo $TERM; id -u; exit 3");
    assertEquals(3, tty.status().exitCode(), tty.output());
    assertTrue(tty.output().matches("/dev/pts/\\d+\r\n25 90\r\nxterm\r\n1000\r\n"), tty.output());

    // file operations act inside the tenant's root too
    agent.writeFile("/app/from-agent.txt", new ByteArrayInputStream("written by WriteFile\n".getBytes(StandardCharsets.UTF_8)),
        0644, TestAgent.CALL).get(30, TimeUnit.SECONDS);
    assertEquals("written by WriteFile\n", exec(agent, "root", "/", "cat /app/from-agent.txt").output());
    ByteArrayOutputStream hello = new ByteArrayOutputStream();
    agent.readFile("/app/hello.txt", hello, TestAgent.CALL).get(30, TimeUnit.SECONDS);
    assertEquals("a file of the image\n", hello.toString(StandardCharsets.UTF_8));

    // the tenant (root in the guest) cannot write the image's device; a write to one of its files
    // lands in the overlay's upper directory, on the sandbox's own disk
    TestAgent.Result device = exec(agent, "root", "/",
        "for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = fl-image ] && d=/dev/${b##*/}; done; "
            + "echo ro=$(cat /sys/block/${d#/dev/}/ro); dd if=/dev/zero of=$d bs=4096 count=1 conv=fsync 2>&1; echo dd=$?; "
            + "echo changed >/app/hello.txt && sync && cat /app/hello.txt");
    assertTrue(device.output().contains("ro=1"), device.output());
    assertTrue(device.output().contains("dd=1"), "a write to the image's device fails: " + device.output());
    assertTrue(device.output().endsWith("changed\n"), device.output());

    // past disk_mib: ENOSPC inside the guest, the host's file no bigger
    TestAgent.Result full = exec(agent, "root", "/", "dd if=/dev/zero of=/big bs=1M count=" + (DISK_MIB * 2) + " 2>&1; echo dd=$?; rm -f /big");
    assertTrue(full.output().contains("No space left on device"), full.output());
    assertTrue(full.output().contains("dd=1"), full.output());
    assertEquals(DISK_MIB * 1024L * 1024L, Files.size(writable));
    assertEquals("", exec(agent, "root", "/", "mkdir -p /data && echo kept >/data/keep.txt && sync").output());

    // a restart of the same sandbox on this node: a new VM, the same writable disk, the image unchanged
    Vm first = vms.get(0);
    first.stop(Duration.ofSeconds(5));
    first.exitFuture().get(30, TimeUnit.SECONDS);
    first.destroy();
    assertEquals(imageDigest, sha256(hv.config().imageDisksDir().resolve(cachedDisk())), "the image's disk is unchanged");
    AgentClient second = boot(2);
    TestAgent.Result after = exec(second, "root", "/", "cat /data/keep.txt /app/hello.txt; [ -e /big ] || echo no-big");
    assertEquals("kept\nchanged\nno-big\n", after.output());

    // deleted: the writable disk goes, the id range is freed, the image store hears of it
    Vm second2 = vms.get(1);
    second2.kill();
    second2.exitFuture().get(30, TimeUnit.SECONDS);
    second2.destroy();
    assertTrue(hv.sandboxesWithLocalState().contains(ID));
    hv.releaseSandbox(ID);
    assertFalse(Files.exists(writable));
    assertFalse(hv.sandboxesWithLocalState().contains(ID));
    assertEquals(List.of(ID), released);
    assertNotEquals(0, ImageDisks.links(hv.config().imageDisksDir().resolve(cachedDisk())));
  }

  @Test
  void anImageWithoutTrueStillGetsATemplateItsSandboxesStartFrom() throws Exception {
    // a distroless-like image: no `true` for the template's warm-up execs, which run in the image's
    // root (a template for new disks mounts it before its save)
    Files.createDirectories(base.resolve("layers/app/bin"));
    Path noTrue = base.resolve("layers/app/bin/true");
    Files.deleteIfExists(noTrue);
    run("mknod", noTrue.toString(), "c", "0", "0");
    hv = new QemuHypervisor(hv.config().withTemplateCacheBytes(4L << 30), TestQemu.ids(hv.config().stateRoot()), images);
    TemplateCatalog.Template warmed = hv.templates().orElseThrow()
        .warm(new TemplateCatalog.WarmRequest("", "test/app@sha256:0123", 1, 256));
    QemuTemplates.Saved saved = hv.templateStore().saved().get(0);
    assertTrue(saved.mounted(), "a template for new disks: " + saved);

    Vm vm = hv.prepare(new VmSpec(ID, 1, 1, 256, 0, base.resolve("vms/" + ID + "-t"), Map.of(VmSpec.IMAGE, "test/app@sha256:0123")));
    vms.add(vm);
    vm.start(Duration.ofSeconds(60));
    assertEquals(warmed.id(), vm.handle().extra().get(QemuHypervisor.TEMPLATE), "started from the template");
    AgentClient agent = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10));
    agents.add(agent);
    agent.handshake(ID, 1, BOOT).get();
    assertEquals("a file of the image\nno-true\n", TestAgent.run(agent, "cat /app/hello.txt; [ -e /bin/true ] && echo true || echo no-true")
        .output(), "the clone runs in the image's root, as the template left it mounted");
  }

  private String cachedDisk() throws Exception {
    try (Stream<Path> s = Files.list(hv.config().imageDisksDir())) {
      return s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(ImageDisks.SUFFIX)).findFirst().orElseThrow();
    }
  }

  private static TestAgent.Result exec(AgentClient agent, String user, String cwd, String script) throws Exception {
    return TestAgent.run(agent, user, cwd, script);
  }

  private static String sha256(Path file) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(file)));
  }

  private static void run(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(30, TimeUnit.SECONDS), String.join(" ", cmd));
    assertEquals(0, p.exitValue(), String.join(" ", cmd) + ": " + out);
  }
}
