package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * A sandbox in a real QEMU microVM, created and driven through the public gRPC API (the same
 * path `flotilla create --driver qemu` takes). Needs the guest image (guest-image/build.sh,
 * which scripts/test.sh runs first); skipped with a message without it.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class QemuNodeIT extends NodeScenarios {

  @BeforeAll
  void startNode() throws Exception {
    Path image = FlotillaNode.repoFile(Path.of("guest-image", "out"));
    assumeTrue(Files.isRegularFile(image.resolve("vmlinux")), "no guest image in " + image + ": run guest-image/build.sh");
    boot(new TestNode(TestNode.shortTempDir(), null,
        ConfigFactory.parseString("flotilla.node.drivers.qemu { enabled = on, image-dir = \"" + image + "\" }")));
  }

  @AfterAll
  void stopNode() {
    if (node != null) tearDown(node);
  }

  @Test
  void aSandboxRunsInAMicroVm() {
    // with --network egress (allow everything): the node offers it for qemu where passt is installed
    SandboxSpec spec = SandboxSpec.newBuilder().setDriver("qemu").setVcpus(1).setMemoryMib(512)
        .setNetwork(dev.flotilla.api.v1.NetworkSpec.newBuilder().setMode("egress").addAllow("0.0.0.0/0")).build();
    String id = create(spec, "").getId();
    Sandbox running = awaitPhase(id, Phase.RUNNING);
    assertEquals("qemu", running.getSpec().getDriver());
    // The guest is its own machine: its own kernel, booted for this sandbox, on a virtual CPU.
    String cmdline = exec(id, "cat", "/proc/cmdline").stdout();
    assertTrue(cmdline.contains("flotilla.sandbox_id=" + id), cmdline);
    // Its network: a virtio-net interface and the node's DNS forwarder; the node's gRPC port, by
    // every address of the host, out of reach even with allow 0.0.0.0/0 (QemuEgressNetworkTest
    // proves what reaches where against a test-made internet)
    String net = exec(id, "sh", "-c", "ls /sys/class/net; cat /etc/resolv.conf").stdout();
    assertTrue(net.contains("eth0") && net.contains("nameserver 169.254.1.1"), net);
    String hosts = NodeOnH2IT.hostAddresses();
    ExecResult reach = exec(id, "sh", "-c", "for h in " + hosts + "; do (nc -w 3 $h " + node.node.grpcPort()
        + " </dev/null && echo reached $h) & done; wait; echo tried " + hosts);
    assertTrue(reach.stdout().contains("tried") && !reach.stdout().contains("reached"), reach.stdout() + reach.stderr());
    assertEquals(0, exec(id, "grep", "-q", "hypervisor", "/proc/cpuinfo").exitCode(), "the guest sees a hypervisor");
    ExecResult r = exec(id, "sh", "-c", "echo in-vm; exit 7");
    assertEquals("in-vm\n", r.stdout());
    assertEquals(7, r.exitCode());

    // live resize through the API: the balloon gives 128 MiB back in the same VM; past the memory
    // the VM booted with is refused with why, and nothing changes
    Sandbox resized = await(client.resizeSandbox().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.ResizeSandboxRequest.newBuilder().setId(id).setMemoryMib(384).build()));
    assertEquals(List.of(384, 1L), List.of(resized.getSpec().getMemoryMib(), resized.getIncarnation()));
    org.awaitility.Awaitility.await().atMost(READY).ignoreExceptions().until(() -> memTotalMiB(id) < 384); // the guest's MemTotal follows the balloon
    var past = failure(() -> await(client.resizeSandbox().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.ResizeSandboxRequest.newBuilder().setId(id).setMemoryMib(1024).build())));
    assertEquals(io.grpc.Status.Code.FAILED_PRECONDITION, past.getStatus().getCode());
    assertTrue(past.getStatus().getDescription().contains("booted with 512 MiB"), past.getStatus().getDescription());
    assertEquals(384, get(id).getSpec().getMemoryMib());

    // kill -9 of QEMU from outside: reported as the VM's exit, and the restart policy (always)
    // brings the sandbox back as a new incarnation in a new VM (which boots with the resized memory).
    long qemuPid = new dev.flotilla.vm.VmDirectory(node.dataDir.resolve("vms")).handles().stream()
        .filter(h -> h.sandboxId().equals(id)).mapToLong(dev.flotilla.vm.VmHandle::pid).findFirst().orElseThrow();
    ProcessHandle.of(qemuPid).orElseThrow().destroyForcibly();
    org.awaitility.Awaitility.await().atMost(READY).pollInterval(java.time.Duration.ofMillis(250))
        .until(() -> get(id).getIncarnation() == 2 && get(id).getPhase() == Phase.RUNNING);
    assertEquals(1, get(id).getRestartCount(), get(id).toString());
    assertEquals("back\n", exec(id, "echo", "back").stdout());
    assertTrue(memTotalMiB(id) < 384, "incarnation 2 booted with 384 MiB, not the 512 of its create");
    assertTrue(exec(id, "ls", "/sys/class/net").stdout().contains("eth0"), "the new incarnation has its network too");
    assertTrue(ProcessHandle.of(qemuPid).map(p -> !p.isAlive()).orElse(true));
    await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
  }

  /** The guest's MemTotal in MiB: the RAM it booted with less the kernel's own, less what its balloon holds. */
  private long memTotalMiB(String id) {
    return Long.parseLong(exec(id, "awk", "/^MemTotal:/ {print $2}", "/proc/meminfo").stdout().trim()) / 1024;
  }

  /**
   * VM templates through the API: warmed on this node, then a sandbox of that shape starts as its
   * clone and is its own sandbox (identity, hostname, clock) in its image's root; the template stays
   * while the clone runs and goes once the sandbox is deleted.
   */
  @Test
  void aSandboxStartsFromAWarmedTemplate() throws java.io.IOException {
    var templates = dev.flotilla.api.v1.TemplateServiceClient.create(org.apache.pekko.grpc.GrpcClientSettings
        .connectToServiceAt("127.0.0.1", node.node.grpcPort(), clientSystem).withTls(false), clientSystem);
    try {
      dev.flotilla.api.v1.Template warmed = await(templates.warmTemplate().addHeader("authorization", bearer())
          .invoke(dev.flotilla.api.v1.WarmTemplateRequest.newBuilder().setCpus(1).setMemoryMib(256).build()));
      SandboxSpec spec = SandboxSpec.newBuilder().setDriver("qemu").setVcpus(1).setMemoryMib(256).build();
      long t0 = System.nanoTime();
      String id = create(spec, "").getId();
      awaitPhase(id, Phase.RUNNING);
      ExecResult who = exec(id, "sh", "-c", "hostname; echo $FLOTILLA_SANDBOX_ID; date +%s; [ -d /opt/flotilla ] && echo initramfs || echo image-root");
      System.out.printf("create-to-first-exec from a template: %d ms%n", (System.nanoTime() - t0) / 1_000_000);
      String[] lines = who.stdout().split("\n");
      assertEquals("fl-" + id, lines[0], who.stdout());
      assertEquals(id, lines[1]);
      assertTrue(Math.abs(Long.parseLong(lines[2]) - System.currentTimeMillis() / 1000) <= 2, "the clone's clock is the host's: " + lines[2]);
      assertEquals("image-root", lines[3]);
      dev.flotilla.vm.VmHandle handle = new dev.flotilla.vm.VmDirectory(node.dataDir.resolve("vms")).handles().stream()
          .filter(h -> h.sandboxId().equals(id)).findFirst().orElseThrow();
      assertEquals(warmed.getId(), handle.extra().get("template"), "started from the warmed template: " + handle.extra());
      var listed = await(templates.listTemplates().addHeader("authorization", bearer())
          .invoke(dev.flotilla.api.v1.ListTemplatesRequest.getDefaultInstance())).getTemplatesList();
      // (the other tests' sandboxes may have built templates of their shapes too: first need)
      dev.flotilla.api.v1.Template mine = listed.stream().filter(t -> t.getId().equals(warmed.getId())).findFirst().orElseThrow();
      assertEquals(1, mine.getClones(), listed.toString());
      var busy = failure(() -> await(templates.removeTemplate().addHeader("authorization", bearer())
          .invoke(dev.flotilla.api.v1.RemoveTemplateRequest.newBuilder().setId(warmed.getId()).build())));
      assertEquals(io.grpc.Status.Code.FAILED_PRECONDITION, busy.getStatus().getCode(), busy.getStatus().toString());

      suspendsAndResumesWhereItWas(id, templates, warmed.getId());
      await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
    } finally {
      templates.close();
    }
  }

  /**
   * Suspend through the API: no QEMU is left and the snapshot is in the node's store; then an exec
   * resumes it (auto-resume) as incarnation 2, where the same counting process goes on counting
   * from where it was, with the file it wrote on its disk; the spent snapshot is removed. Then a
   * fork of it: both count on independently from the same value.
   */
  private void suspendsAndResumesWhereItWas(String id, dev.flotilla.api.v1.TemplateServiceClient templates, String template)
      throws java.io.IOException {
    String pid = exec(id, "sh", "-c", "echo kept > /marker; (i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.2; done)"
        + " >/dev/null 2>&1 </dev/null & echo $!").stdout().trim();
    org.awaitility.Awaitility.await().atMost(READY).ignoreExceptions().until(() -> count(id) >= 3);
    long before = count(id);
    String random = exec(id, "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'").stdout();
    long t0 = System.nanoTime();
    Sandbox suspended = await(client.suspendSandbox().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.SuspendSandboxRequest.newBuilder().setId(id).build()));
    long suspendMs = (System.nanoTime() - t0) / 1_000_000;
    assertEquals(Phase.SUSPENDED, suspended.getPhase());
    assertTrue(suspended.getStatusMessage().contains("memory and disk are saved"), suspended.getStatusMessage());
    Path snapshot = node.dataDir.resolve("snapshots").resolve(id + "-1");
    assertTrue(Files.isRegularFile(snapshot.resolve("state")), "the snapshot is in the node's store: " + snapshot);
    assertTrue(new dev.flotilla.vm.VmDirectory(node.dataDir.resolve("vms")).handles().stream().noneMatch(h -> h.sandboxId().equals(id)),
        "no VM of it runs");
    // its snapshot holds all of its RAM: the template it was cloned from is not needed to resume it
    assertEquals(template, await(templates.removeTemplate().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.RemoveTemplateRequest.newBuilder().setId(template).build())).getId(), "no clone holds it any more");
    t0 = System.nanoTime();
    ExecResult after = exec(id, "sh", "-c", "cat /tmp/count /marker; kill -0 " + pid + " && echo alive");
    System.out.printf("suspend (gRPC) %d ms; resume by an exec, to its answer: %d ms%n", suspendMs, (System.nanoTime() - t0) / 1_000_000);
    String[] lines = after.stdout().split("\n");
    assertTrue(Long.parseLong(lines[0]) >= before, "counts on from " + before + ": " + after.stdout());
    assertEquals(List.of("kept", "alive"), List.of(lines[1], lines[2]), after.stdout() + after.stderr());
    Sandbox back = get(id);
    assertEquals(List.of(Phase.RUNNING, 2L), List.of(back.getPhase(), back.getIncarnation()));
    dev.flotilla.vm.VmHandle resumed = new dev.flotilla.vm.VmDirectory(node.dataDir.resolve("vms")).handles().stream()
        .filter(h -> h.sandboxId().equals(id) && h.incarnation() == 2).findFirst().orElseThrow();
    String qemu = ProcessHandle.of(resumed.pid()).flatMap(p -> p.info().arguments()).map(a -> String.join(" ", a)).orElse("");
    assertTrue(qemu.contains("memory-backend-ram,id=mem") && !qemu.contains("memory-backend-file"), "plain RAM: " + qemu);
    assertTrue(!random.equals(exec(id, "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'").stdout()),
        "its kernel RNG was reseeded at the resume");
    Path console = resumed.stateDir().resolve("console.log");
    org.awaitility.Awaitility.await().atMost(READY).until(() -> Files.readString(console).contains("reborn as"));
    assertTrue(!Files.readString(console).contains("mounting the root"), "the root is not mounted again");
    long next = count(id);
    org.awaitility.Awaitility.await().atMost(READY).ignoreExceptions().until(() -> count(id) > next); // still counting
    org.awaitility.Awaitility.await().atMost(READY).until(() -> !Files.exists(snapshot));

    // Fork it: the source runs on (same incarnation), the fork continues from the same count with
    // the same counting process, but is its own sandbox, with its own disk.
    long atFork = count(id);
    t0 = System.nanoTime();
    Sandbox fork = await(client.forkSandbox().addHeader("authorization", bearer())
        .invoke(dev.flotilla.api.v1.ForkSandboxRequest.newBuilder().setId(id).build()));
    long forkMs = (System.nanoTime() - t0) / 1_000_000;
    String fid = fork.getId();
    try {
      awaitPhase(fid, Phase.RUNNING);
      System.out.printf("fork (gRPC) %d ms; to RUNNING %d ms%n", forkMs, (System.nanoTime() - t0) / 1_000_000);
      ExecResult f = exec(fid, "sh", "-c", "cat /tmp/count /marker; kill -0 " + pid + " && echo alive; hostname; echo $FLOTILLA_SANDBOX_ID;"
          + " echo fork-only > /fork-only");
      String[] fl = f.stdout().split("\n");
      assertTrue(Long.parseLong(fl[0]) >= atFork, "the fork counts on from " + atFork + ": " + f.stdout());
      assertEquals(List.of("kept", "alive", "fl-" + fid, fid), List.of(fl[1], fl[2], fl[3], fl[4]), f.stdout() + f.stderr());
      assertEquals(List.of(Phase.RUNNING, 2L), List.of(get(id).getPhase(), get(id).getIncarnation()), "the source runs on");
      assertEquals(1, exec(id, "test", "-e", "/fork-only").exitCode(), "the fork's disk is its own");
      long s1 = count(id);
      long f1 = count(fid);
      org.awaitility.Awaitility.await().atMost(READY).ignoreExceptions().until(() -> count(id) > s1 && count(fid) > f1); // both count on
    } finally {
      await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(fid).build()));
    }
  }

  private long count(String id) {
    return Long.parseLong(exec(id, "cat", "/tmp/count").stdout().trim());
  }

  @Test
  void aMainProcessRunsInTheGuestsImageRootAndEndsItsVm() {
    SandboxSpec spec = SandboxSpec.newBuilder().setDriver("qemu").setVcpus(1).setMemoryMib(512)
        .setRestartPolicy(dev.flotilla.api.v1.RestartPolicy.NEVER)
        .addAllCommand(java.util.List.of("sh", "-c", "echo main in $(uname -r); echo to-stderr >&2; exit 4")).build();
    String id = create(spec, "").getId();
    Sandbox stopped = awaitPhase(id, Phase.STOPPED);
    assertEquals("main process exited with code 4", stopped.getStatusMessage());
    Logs logs = logs(id, 0, false);
    assertTrue(logs.stdout().startsWith("main in "), logs.stdout());
    assertEquals("to-stderr\n", logs.stderr());
    await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
  }
}
