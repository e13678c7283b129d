package dev.flotilla.vm.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.ids.IdRangeAllocator;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The driver's decisions that need no VM: command line, jail, uid, refusals, QMP's JSON. */
class QemuHypervisorTest {

  @TempDir Path tmp;

  private QemuConfig config() throws Exception {
    Path image = Files.createDirectories(tmp.resolve("image"));
    Files.writeString(image.resolve("vmlinux"), "");
    Files.writeString(image.resolve("initramfs.cpio"), "");
    Path rootfs = Files.createDirectories(tmp.resolve("rootfs/bin"));
    Files.writeString(rootfs.resolve("sh"), "not a shell");
    return new QemuConfig("qemu-system-x86_64", image, "tcg", tmp.resolve("driver")).withDefaultRootfs(rootfs.getParent());
  }

  private QemuHypervisor hypervisor() throws Exception {
    return TestQemu.hypervisor(config());
  }

  @Test
  void aTemplateCloneGetsItsOwnSmallerTranslationCacheUnderTcg() throws Exception {
    VmSpec spec = new VmSpec("sb-1", 1, 1, 256, 0, tmp.resolve("vm"), Map.of());
    var clone = java.util.Optional.of(QemuHypervisor.MemoryFile.CLONE);
    var template = java.util.Optional.of(QemuHypervisor.MemoryFile.TEMPLATE);
    String cloned = String.join(" ", hypervisor().command(spec, false, true, java.util.Optional.empty(), clone));
    assertTrue(cloned.contains("-accel tcg,tb-size=" + QemuConfig.DEFAULT_CLONE_TCG_CACHE_MIB + " "), cloned);
    // the template itself boots: a cold VM's cache
    String tpl = String.join(" ", hypervisor().command(spec, false, true, java.util.Optional.empty(), template));
    assertTrue(tpl.contains("-accel tcg,tb-size=" + QemuHypervisor.TCG_TB_SIZE_MIB + " "), tpl);
    String configured = String.join(" ", TestQemu.hypervisor(config().withCloneTcgCacheMiB(16))
        .command(spec, false, true, java.util.Optional.empty(), clone));
    assertTrue(configured.contains("-accel tcg,tb-size=16 "), configured);
    assertTrue(String.join(" ", hypervisor().command(spec, true, true, java.util.Optional.empty(), clone)).contains("-accel kvm "));
    assertThrows(IllegalArgumentException.class, () -> config().withCloneTcgCacheMiB(4));
  }

  @Test
  void commandLineJailsQemuAsTheSandboxsOwnUid() throws Exception {
    QemuHypervisor hv = hypervisor();
    QemuVm vm = (QemuVm) hv.prepare(new VmSpec("sb-1", 7, 2, 512, 0, tmp.resolve("vm"), Map.of()));
    String cmd = String.join(" ", vm.command());
    assertTrue(cmd.contains("-M microvm,pit=on -accel tcg,tb-size=" + QemuHypervisor.TCG_TB_SIZE_MIB), cmd);
    assertTrue(cmd.contains("-smp 2 -m 512M"), cmd);
    assertTrue(cmd.contains("flotilla.sandbox_id=sb-1 flotilla.incarnation=7"), cmd);
    assertTrue(cmd.contains("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"), cmd);
    // QEMU sees the jail's paths: its kernel and initramfs, its sockets in its own run directory
    assertTrue(cmd.contains("-kernel /vm/vmlinux -initrd /vm/initramfs.cpio"), cmd);
    assertTrue(cmd.contains("path=/run/agent.sock,server=on,wait=off"), cmd);
    assertTrue(cmd.contains("socket,id=console,path=/run/console.sock,server=on,wait=on -serial chardev:console"), cmd);
    assertTrue(cmd.contains("name=flotilla.agent"), cmd);
    assertTrue(cmd.contains("-no-reboot"), cmd);
    // the image's disk read-only, the sandbox's writable one, the config disk: found by serial
    assertTrue(cmd.contains("flotilla.root=disk"), cmd);
    assertTrue(cmd.contains("-drive file=/vm/image,if=none,id=image,format=raw,readonly=on -device virtio-blk-device,drive=image,serial=fl-image"), cmd);
    assertTrue(cmd.contains("-drive file=/vm/disk,if=none,id=disk,format=raw -device virtio-blk-device,drive=disk,serial=fl-disk"), cmd);
    assertTrue(cmd.contains("-drive file=/vm/config,if=none,id=config,format=raw,readonly=on -device virtio-blk-device,drive=config,serial=fl-config"), cmd);
    assertFalse(cmd.contains(tmp.toString()), "no host path reaches QEMU: " + cmd);
    if (HostProbe.tscKhz() > 0) assertTrue(cmd.contains("tsc_early_khz=" + HostProbe.tscKhz()), cmd);

    // the sandbox's uid is the start of its own id range; setpriv drops to it before QEMU runs
    long uid = hv.ids().rangeOf("sb-1").orElseThrow().hostStart();
    assertEquals(TestQemu.TEST_IDS_START, uid);
    assertEquals(Long.toString(uid), vm.handle().extra().get("uid"));
    String launch = String.join(" ", vm.launch());
    assertTrue(launch.contains("unshare --mount --propagation private --net --ipc --uts"), launch);
    assertTrue(QemuJail.SCRIPT.contains("setpriv --reuid=\"$uid\" --regid=\"$uid\" \"$groups\" --no-new-privs"
        + " --inh-caps=-all --bounding-set=-all"), QemuJail.SCRIPT);
    // no supplementary group unless it is a template's clone (then only the template's)
    assertTrue(QemuJail.SCRIPT.contains("groups=--clear-groups\n[ \"$group\" = - ] || groups=--groups=\"$group\""), QemuJail.SCRIPT);
    assertTrue(launch.contains(" " + uid + " - "), "no /dev/kvm under TCG: " + launch);
    Path imageDisk = tmp.resolve("vm/image" + ImageDisks.SUFFIX);
    Path writable = hv.writableDisk("sb-1");
    assertTrue(launch.contains(" - " + imageDisk + " " + writable + " " + tmp.resolve("vm/config.disk") + " - - "),
        "no memory file, no supplementary group: " + launch);
    // the image's disk: root's 0644, linked from the node-only cache; the writable disk: the sandbox uid's 0600
    assertEquals("rw-r--r--", PosixFilePermissions.toString(Files.getPosixFilePermissions(imageDisk)));
    assertEquals(2, ImageDisks.links(imageDisk));
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(hv.config().imageDisksDir())));
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(writable)));
    assertEquals(uid, ((Number) Files.getAttribute(writable, "unix:uid")).longValue() & 0xffffffffL);
    assertEquals(QemuConfig.DEFAULT_DISK_MIB * 1024L * 1024L, Files.size(writable));
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(hv.config().disksDir())));
    // the config disk: the image's exec defaults (none for the default image), whole sectors
    String configText = Files.readString(tmp.resolve("vm/config.disk")).replace("\0", "");
    assertTrue(configText.contains("workingDir=") && configText.contains("user="), configText);
    assertEquals(0, Files.size(tmp.resolve("vm/config.disk")) % 4096);

    // without disks (rootfs=initramfs, for comparisons): none attached
    QemuVm bare = (QemuVm) hv.prepare(new VmSpec("sb-3", 1, 1, 256, 0, tmp.resolve("vm4"), Map.of(QemuHypervisor.ROOTFS_OPTION, "initramfs")));
    assertFalse(String.join(" ", bare.command()).contains("-drive"), bare.command().toString());
    assertFalse(String.join(" ", bare.command()).contains("flotilla.root"), bare.command().toString());
    assertThrows(VmException.class, () -> hv.prepare(new VmSpec("sb-3", 2, 1, 256, 0, tmp.resolve("vm5"),
        Map.of(QemuHypervisor.ROOTFS_OPTION, "initramfs", VmSpec.IMAGE, "x@sha256:00"))));
    hv.releaseSandbox("sb-3");

    // node-only files in the VM's directory; QEMU's sockets in a directory of the sandbox's uid
    Path run = tmp.resolve("vm/run");
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(tmp.resolve("vm"))));
    assertEquals(0, ((Number) Files.getAttribute(tmp.resolve("vm"), "unix:uid")).intValue());
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(run)));
    assertEquals(uid, ((Number) Files.getAttribute(run, "unix:uid")).longValue() & 0xffffffffL);
    assertEquals(run.resolve("agent.sock"), vm.handle().agentSocket());
    assertEquals(run.resolve("qmp.sock").toString(), vm.handle().extra().get("qmpSocket"));
    assertEquals("tcg", vm.handle().extra().get("accel"));

    // another sandbox, another uid; the same sandbox again, the same uid
    QemuVm other = (QemuVm) hv.prepare(new VmSpec("sb-2", 1, 1, 256, 0, tmp.resolve("vm2"), Map.of()));
    assertEquals(Long.toString(uid + 65536), other.handle().extra().get("uid"));
    QemuVm again = (QemuVm) hv.prepare(new VmSpec("sb-1", 8, 1, 256, 0, tmp.resolve("vm3"), Map.of()));
    assertEquals(Long.toString(uid), again.handle().extra().get("uid"));

    // the same image, one cached disk, linked by each VM
    assertEquals(4, ImageDisks.links(imageDisk));

    // ranges and writable disks are node-local state of their sandboxes, freed once a sandbox is gone
    assertEquals(java.util.Set.of("sb-1", "sb-2"), hv.sandboxesWithLocalState());
    hv.releaseSandbox("sb-1");
    assertEquals(java.util.Set.of("sb-2"), hv.sandboxesWithLocalState());
    assertFalse(Files.exists(writable));
  }

  @Test
  void egressGetsAPasstBackedVirtioNetAndNoneNoNetworkDeviceAtAll() throws Exception {
    QemuHypervisor hv = hypervisor();
    QemuVm none = (QemuVm) hv.prepare(new VmSpec("n-1", 1, 1, 256, 0, tmp.resolve("none"), Map.of()));
    String noneCmd = String.join(" ", none.command());
    assertFalse(noneCmd.contains("-netdev") || noneCmd.contains("virtio-net") || noneCmd.contains("flotilla.net="), noneCmd);
    assertNull(none.network());

    QemuVm vm = (QemuVm) hv.prepare(new VmSpec("e-1", 3, 1, 256, 0, tmp.resolve("egress"),
        Map.of(EgressPolicy.NETWORK, "egress", EgressPolicy.DENY, "192.0.2.0/24,bad.example")));
    String cmd = String.join(" ", vm.command());
    // QEMU 7.2's own passt transport, through the jail's run directory; the guest told its address
    assertTrue(cmd.contains("-netdev stream,id=net0,server=off,addr.type=unix,addr.path=/run/passt.sock"
        + " -device virtio-net-device,netdev=net0"), cmd);
    assertTrue(cmd.contains("flotilla.net=10.0.2.15/24,10.0.2.2,169.254.1.1"), cmd);
    QemuNetwork n = vm.network();
    long uid = hv.ids().rangeOf("e-1").orElseThrow().hostStart();
    assertEquals(uid, n.uid, "passt runs as QEMU's uid, the sandbox's own");
    String passt = String.join(" ", n.command(tmp.resolve("upstream")));
    assertTrue(passt.contains("setpriv --reuid=" + uid + " --regid=" + uid + " --clear-groups --no-new-privs --inh-caps=-all"), passt);
    assertTrue(passt.contains("/etc/resolv.conf && mount --bind \"$2\" /tmp && shift 2 && exec \"$@\" sh " + tmp.resolve("upstream")
        + " " + tmp.resolve("egress/run") + " setpriv"), passt);
    assertTrue(passt.contains("--foreground --one-off --quiet -4 --socket /tmp/passt.sock --pid /tmp/passt.pid"), passt);
    assertTrue(passt.contains("-t none -u none --no-map-gw -a 10.0.2.15 -n 24 -g 10.0.2.2 --dns-forward 169.254.1.1"), passt);
    // the rules are the shared ones for that uid: the deny list as written, a name resolved by the node
    assertEquals(EgressPolicy.fromOptions(Map.of(EgressPolicy.NETWORK, "egress", EgressPolicy.DENY, "192.0.2.0/24,bad.example")), n.policy);
    assertTrue(n.comment.startsWith(hv.egressCommentPrefix()) && n.comment.endsWith("e-1-3"), n.comment);
    // a later node finds the network again in the handle (to refresh its rules, or remove them)
    QemuNetwork again = QemuNetwork.fromHandle(hv.egress(), n.record(vm.handle())).orElseThrow();
    assertEquals(n.policy, again.policy);
    assertEquals(n.comment, again.comment);
    assertEquals(n.uid, again.uid);
    assertTrue(QemuNetwork.fromHandle(hv.egress(), none.handle()).isEmpty());
    // the node's protected endpoints (the journal's database, other nodes' Artery) are refused to a VM too
    QemuHypervisor guarded = TestQemu.hypervisor(hv.config().withProtectedEndpoints(List.of("198.51.100.7:5432")));
    EgressPolicy noNames = EgressPolicy.fromOptions(Map.of(EgressPolicy.NETWORK, "egress", EgressPolicy.DENY, "192.0.2.0/24"));
    String script = guarded.egress().render(uid, n.comment, noNames).restoreScript(false);
    assertTrue(script.contains("-d 198.51.100.7/32 -p tcp --dport 5432 -j FLSBR-" + uid), script);
    assertTrue(script.contains("-d 192.0.2.0/24 -j FLSBR-" + uid), script);

    // where passt is missing, egress is refused with what to do, and the driver does not offer it
    QemuHypervisor broken = TestQemu.hypervisor(hv.config().withNetwork(hv.config().network().withPasst(tmp.resolve("no-passt"))));
    VmException e = assertThrows(VmException.class, () -> broken.prepare(new VmSpec("e-2", 1, 1, 256, 0, tmp.resolve("e2"),
        Map.of(EgressPolicy.NETWORK, "egress"))));
    assertTrue(e.getMessage().contains("apt-get install passt") && e.getMessage().contains("setup-host.sh"), e.getMessage());
    assertFalse(broken.capabilities().enforcedLimits().contains("network-egress"));
    assertTrue(broken.capabilities().warnings().stream().anyMatch(w -> w.contains("no network egress for QEMU sandboxes")));
    if (QemuNetwork.missing(hv.egress()).isEmpty()) assertTrue(hv.capabilities().enforcedLimits().contains("network-egress"));
    VmException bad = assertThrows(VmException.class, () -> hv.prepare(new VmSpec("e-3", 1, 1, 256, 0, tmp.resolve("e3"),
        Map.of(EgressPolicy.NETWORK, "egress", EgressPolicy.ALLOW, "10.0.0.1/8"))));
    assertTrue(bad.getMessage().contains("did you mean 10.0.0.0/8"), bad.getMessage());
  }

  @Test
  void theJailRootHoldsOnlyWhatQemuNeeds() throws Exception {
    QemuJail.Tree tree = QemuJail.ensure(tmp.resolve("driver"), "qemu-system-x86_64");
    Path root = tree.root();
    assertTrue(Files.isRegularFile(root.resolve(tree.qemu().toString().substring(1))), tree.qemu().toString());
    assertTrue(Files.exists(root.resolve("usr/bin/setpriv")));
    for (String absent : List.of("etc", "root", "home", "tmp", "var", "sys")) {
      assertFalse(Files.exists(root.resolve(absent)), absent + " is in the jail root");
    }
    // nothing in it is writable by others or set-id
    try (var files = Files.walk(root)) {
      for (Path f : files.filter(f -> !Files.isSymbolicLink(f)).toList()) {
        int mode = (Integer) Files.getAttribute(f, "unix:mode");
        assertEquals(0, mode & 06002, f + " mode " + Integer.toOctalString(mode));
      }
    }
    // built once: a second call finds the same tree
    assertEquals(root, QemuJail.ensure(tmp.resolve("driver"), "qemu-system-x86_64").root());
  }

  @Test
  void refusesWhatCannotBoot() throws Exception {
    QemuHypervisor hv = hypervisor();
    VmException small = assertThrows(VmException.class,
        () -> hv.prepare(new VmSpec("a", 1, 1, 128, 0, tmp.resolve("a"), Map.of())));
    assertTrue(small.getMessage().contains("memoryMiB >= 256"), small.getMessage());
    assertThrows(VmException.class, () -> hv.prepare(new VmSpec("a b", 1, 1, 256, 0, tmp.resolve("b"), Map.of())));
    Path deep = tmp.resolve("x".repeat(100));
    VmException longPath = assertThrows(VmException.class, () -> hv.prepare(new VmSpec("a", 1, 1, 256, 0, deep, Map.of())));
    assertTrue(longPath.getMessage().contains("too long for a Unix socket"), longPath.getMessage());
    VmException noImage = assertThrows(VmException.class, () -> TestQemu.hypervisor(
        new QemuConfig("qemu-system-x86_64", tmp.resolve("none"), "tcg", tmp.resolve("driver"))).prepare(new VmSpec("a", 1, 1, 256, 0, tmp.resolve("c"), Map.of())));
    assertTrue(noImage.getMessage().contains("guest-image/build.sh"), noImage.getMessage());
    VmException noDefault = assertThrows(VmException.class, () -> TestQemu.hypervisor(hv.config().withDefaultRootfs(tmp.resolve("nothing")))
        .prepare(new VmSpec("a", 1, 1, 256, 0, tmp.resolve("d"), Map.of())));
    assertTrue(noDefault.getMessage().contains("build-default-image.sh"), noDefault.getMessage());
  }

  @Test
  void imageDisksAreBuiltOncePerLayerListAndUnusedOnesEvictedPastTheCap() throws Exception {
    Path top = Files.createDirectories(tmp.resolve("l/top/etc"));
    Files.writeString(top.resolve("hostname"), "top\n");
    Path bottom = Files.createDirectories(tmp.resolve("l/bottom/etc"));
    Files.writeString(bottom.resolve("hostname"), "bottom\n");
    Files.writeString(bottom.resolve("motd"), "from below\n");
    ImageDisks disks = new ImageDisks(tmp.resolve("cache"), 0);
    Path both = disks.ensure(List.of(top.getParent(), bottom.getParent()));
    assertEquals(both, disks.ensure(List.of(top.getParent(), bottom.getParent())), "built once");
    Path vm = Files.createDirectories(tmp.resolve("vmdir"));
    Path link = ImageDisks.linkInto(both, vm);
    assertEquals(2, ImageDisks.links(both));
    // another image: the cap (0) evicts what no VM links, never the disk a VM uses
    Path one = disks.ensure(List.of(bottom.getParent()));
    assertTrue(Files.exists(one), "just built: kept for the VM that asked");
    disks.evict();
    assertTrue(Files.exists(both), "linked by a VM: kept");
    assertFalse(Files.exists(one), "unused past the cap: removed");
    Files.delete(link);
    disks.evict();
    assertFalse(Files.exists(both));
    try (var left = Files.list(tmp.resolve("cache"))) {
      assertEquals(List.of(), left.toList(), "no build leftovers, no mounts");
    }
    assertTrue(dev.flotilla.vm.process.Mounts.mountPointsUnder(tmp).isEmpty());
  }

  @Test
  void aFencedDriverSpawnsNoQemu() throws Exception {
    QemuHypervisor hv = hypervisor();
    assertTrue(hv.fence(java.time.Duration.ofSeconds(5)));
    QemuVm vm = (QemuVm) hv.prepare(new VmSpec("sb-f", 1, 1, 256, 0, tmp.resolve("f"), Map.of()));
    VmException e = assertThrows(VmException.class, () -> vm.start(java.time.Duration.ofSeconds(20)));
    assertTrue(e.getMessage().contains("downed by its cluster"), e.getMessage());
    assertEquals(0, vm.handle().pid(), "no QEMU was spawned");
    assertTrue(vm.pids().isEmpty());
  }

  @Test
  void noIdRangeMeansNoVmNotRoot() throws Exception {
    // a node user with no /etc/subuid delegation: no uid for the sandbox, so no QEMU at all
    QemuConfig config = config();
    QemuHypervisor hv = new QemuHypervisor(config, new IdRangeAllocator(tmp.resolve("ids"), List.of(), tmp));
    VmException e = assertThrows(VmException.class, () -> hv.prepare(new VmSpec("a", 1, 1, 256, 0, tmp.resolve("a"), Map.of())));
    assertTrue(e.getMessage().contains("scripts/setup-host.sh"), e.getMessage());
    assertFalse(Files.exists(tmp.resolve("a")), "nothing prepared");
    assertTrue(hv.capabilities().warnings().stream().anyMatch(w -> w.contains("no subordinate id range")), hv.capabilities().toString());
  }

  @Test
  void limitsThatCannotBeEnforcedAreRefusedUnlessAllowed() throws Exception {
    // a cgroup parent that cannot be made in any hierarchy (a file of that name is in each root)
    QemuConfig config = config().withCgroupParent("cgroup.procs");
    QemuHypervisor hv = TestQemu.hypervisor(config);
    // (network-egress is the host firewall's, not a cgroup's)
    assertTrue(hv.capabilities().enforcedLimits().stream().noneMatch(List.of("memory", "cpu", "pids")::contains), hv.capabilities().toString());
    assertTrue(hv.capabilities().warnings().stream().anyMatch(w -> w.contains("memory limit cannot be enforced")),
        hv.capabilities().toString());
    VmException e = assertThrows(VmException.class, () -> hv.prepare(new VmSpec("a", 1, 1, 256, 0, tmp.resolve("a"), Map.of())));
    assertTrue(e.getMessage().contains("cannot enforce QEMU's cpu, memory, pids limit"), e.getMessage());
    TestQemu.hypervisor(config.withRequireLimits(false)).prepare(new VmSpec("a", 1, 1, 256, 0, tmp.resolve("a"), Map.of()));

    // where the host has them, memory and cpu are the spec's limits enforced (and egress, with passt)
    java.util.Set<String> limits = new java.util.TreeSet<>(hypervisor().capabilities().enforcedLimits());
    limits.remove("network-egress");
    assertEquals(java.util.Set.of("memory", "cpu"), limits);
  }

  @Test
  void imagesTheSandboxUidCannotReadAreRefused() throws Exception {
    QemuHypervisor hv = hypervisor();
    Files.setPosixFilePermissions(hv.config().kernel(), PosixFilePermissions.fromString("rw-------"));
    VmException e = assertThrows(VmException.class, () -> hv.prepare(new VmSpec("a", 1, 1, 256, 0, tmp.resolve("a"), Map.of())));
    assertTrue(e.getMessage().contains("chmod o+r"), e.getMessage());
  }

  @Test
  void qmpTalksOnlyToASocketQemusUidHolds() throws Exception {
    // a socket the node itself (root) holds, where QEMU's should be: as if planted through a link
    Path socket = tmp.resolve("qmp.sock");
    try (var server = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
      server.bind(java.net.UnixDomainSocketAddress.of(socket));
      java.io.IOException e = assertThrows(java.io.IOException.class,
          () -> Qmp.connect(socket, java.util.OptionalLong.of(TestQemu.TEST_IDS_START), java.time.Duration.ofSeconds(2)));
      assertTrue(e.getMessage().contains("not by uid " + TestQemu.TEST_IDS_START), e.getMessage());
    }
  }

  @Test
  void jsonRoundTripsQmpMessages() {
    Object v = Json.parse("{\"return\": {\"status\": \"paused\", \"running\": false, \"n\": [1, -2.5e1, null]},"
        + " \"s\": \"a\\\"b\\u00e9\\n\"}");
    Map<?, ?> m = (Map<?, ?>) v;
    assertEquals(Map.of("status", "paused", "running", false, "n", java.util.Arrays.asList(1L, -25.0, null)), m.get("return"));
    assertEquals("a\"b\u00e9\n", m.get("s"));
    assertEquals("{\"x\":[1,true,\"q\\\"\"]}", Json.write(Map.of("x", List.of(1, true, "q\""))));
    assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\": }"));
  }
}
