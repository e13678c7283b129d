package dev.flotilla.vm.qemu;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.vm.AgentSecrets;
import dev.flotilla.vm.Snapshot;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Suspend, resume and fork at the driver level on real QEMU (TCG): one cold boot carries every
 * check. A guest counts in a loop; a snapshot of it (the source runs on) is restored as another
 * sandbox, and both count on from the same value, each on its own; then the source is suspended
 * (its QEMU ends) and restored as its next incarnation, and its counter continues from its count.
 */
class QemuSnapshotTest {
  private static final Duration BOOT = Duration.ofSeconds(120);
  private static final Duration CALL = Duration.ofSeconds(60);
  /** Counts five times a second; each value is renamed into place, so a reader never sees a file half written. */
  private static final String COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /run/count.new; mv /run/count.new /run/count; sleep 0.2; done";

  private Path base;
  private QemuHypervisor hv;
  private final List<Vm> vms = new ArrayList<>();
  private final List<AgentClient> agents = new ArrayList<>();

  @BeforeEach
  void setUp() throws Exception {
    base = Files.createTempDirectory("fl-qsnap");
    QemuConfig config = TestQemu.config(base.resolve("driver")); // templates off: every VM here boots cold
    assumeTrue(config.imageBuilt(), "guest image not built in " + config.imageDir() + ": run guest-image/build.sh");
    assumeTrue(Files.isDirectory(config.defaultRootfs()), "no default image: run guest-image/build-default-image.sh");
    hv = TestQemu.hypervisor(config);
  }

  @AfterEach
  void tearDown() throws Exception {
    agents.forEach(AgentClient::close);
    for (Vm vm : vms) {
      vm.kill();
      vm.exitFuture().orTimeout(20, TimeUnit.SECONDS).exceptionally(e -> null).join();
    }
    if (base != null && Files.isDirectory(base)) {
      for (Vm vm : vms) {
        System.out.println("console of " + vm.handle().stateDir() + ":\n" + ConsoleLog.tail(vm.handle().stateDir().resolve("console.log"), 3000));
      }
      try (Stream<Path> files = Files.walk(base)) {
        for (Path h : files.filter(f -> f.getFileName().toString().equals(VmHandle.FILE_NAME)).toList()) {
          hv.reap(VmHandle.load(h.getParent()));
        }
      }
      if (hv != null) {
        for (String id : hv.sandboxesWithLocalState()) hv.releaseSandbox(id);
      }
      QemuJail.deleteTree(base);
    }
  }

  private Vm start(String id, long incarnation, String restoreFrom) throws Exception {
    Map<String, String> options = new HashMap<>(Map.of(VmSpec.TENANT, "tenant-a"));
    if (restoreFrom != null) options.put(VmSpec.RESTORE_FROM, restoreFrom);
    Vm vm = hv.prepare(new VmSpec(id, incarnation, 1, 256, 0, base.resolve("vms/" + id + "-" + incarnation), options));
    vms.add(vm);
    vm.start(BOOT);
    return vm;
  }

  private AgentClient connect(Vm vm) {
    AgentClient c = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10));
    agents.add(c);
    return c;
  }

  private static long count(AgentClient c) throws Exception {
    return Long.parseLong(TestAgent.run(c, "cat /run/count").output().trim());
  }

  private static String sh(AgentClient c, String script) throws Exception {
    TestAgent.Result r = TestAgent.run(c, script);
    assertEquals(0, r.status().exitCode(), r.output());
    return r.output().trim();
  }

  /** Tells the agent a pause is coming (its lease restarts at the thaw), then hangs up, as a supervisor does before a save. */
  private static void announcePause(AgentClient c, String id, long incarnation) throws Exception {
    c.handshake(id, incarnation, Duration.ZERO, true, CALL).get();
    c.close();
  }

  private static long pidOf(AgentClient c) throws Exception {
    // the counter's shell: the one process whose command line holds the loop
    return Long.parseLong(sh(c, "for p in /proc/[0-9]*; do grep -q 'while :' $p/cmdline 2>/dev/null && echo ${p#/proc/}; done | head -1"));
  }

  @Test
  void aCountingGuestForksAndSuspendsAndContinuesWhereItWas() throws Exception {
    long t0 = System.nanoTime();
    Vm a = start("snap-a", 1, null);
    AgentClient ca = connect(a);
    ca.handshake("snap-a", 1, BOOT).get();
    System.out.printf("cold boot to handshake: %d ms%n", (System.nanoTime() - t0) / 1_000_000);
    sh(ca, "echo kept > /before && sync");
    long counterPid = ca.execDetached(new ExecRequest("counter", List.of("sh", "-c", COUNTER), Map.of(), "", false, ""), 4096, CALL).get();
    await().atMost(Duration.ofSeconds(60)).until(() -> count(ca) >= 3);
    assertEquals(counterPid, pidOf(ca));

    // fork: a snapshot of the running guest, which runs on
    long beforeFork = count(ca);
    announcePause(ca, "snap-a", 1);
    Path forkDir = base.resolve("snapshots/fork");
    Snapshot fork = a.snapshot(forkDir);
    System.out.printf("fork snapshot: guest paused %d ms, %d ms in all; state %d KiB, disk %d MiB (%d KiB allocated)%n",
        fork.pausedMillis(), fork.elapsedMillis(), fork.stateBytes() >> 10, fork.diskBytes() >> 20, fork.diskAllocatedBytes() >> 10);
    assertFalse(a.exitFuture().isDone(), "the source runs on");
    assertEquals("running", ((QemuVm) a).status(CALL));
    assertTrue(fork.stateBytes() > 1 << 20, "all of the RAM in use: " + fork.stateBytes());
    assertTrue(fork.diskAllocatedBytes() < fork.diskBytes(), "copied sparsely");
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(forkDir)));
    for (String f : List.of(QemuSnapshots.STATE, QemuSnapshots.DISK, QemuSnapshots.META, AgentSecrets.FILE_NAME)) {
      assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(forkDir.resolve(f))), f);
    }
    AgentClient ca2 = connect(a);
    ca2.handshake("snap-a", 1, CALL).get(); // withdraws the announcement
    long t1 = System.nanoTime();
    Vm b = start("snap-b", 1, forkDir.toString());
    AgentClient cb = connect(b);
    GuestInfo gb = cb.handshake("snap-b", 1, CALL).get();
    System.out.printf("fork restore to handshake: %d ms%n", (System.nanoTime() - t1) / 1_000_000);
    assertEquals("snap-b", gb.sandboxId());
    assertEquals("fl-snap-b", gb.hostname());
    assertEquals("snap-b 1 fl-snap-b", sh(cb, "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION $(hostname)"));
    assertEquals("fl-snap-a", sh(ca2, "hostname"));
    // both count on from the snapshot's value, the same process in each
    assertEquals(counterPid, pidOf(cb), "the fork's counter is the source's process");
    long b0 = count(cb);
    assertTrue(b0 >= beforeFork, "the fork continues from the source's count " + beforeFork + ", not from 0: " + b0);
    await().atMost(Duration.ofSeconds(60)).until(() -> count(cb) > b0 && count(ca2) > beforeFork);
    // each on its own: files, random bytes
    sh(cb, "echo only-b > /only-b && sync");
    assertEquals("own", sh(ca2, "[ -e /only-b ] && echo shared || echo own"));
    assertEquals("kept", sh(cb, "cat /before"), "the fork has the source's disk as it was");
    String rndA = sh(ca2, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
    String rndB = sh(cb, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
    assertEquals(64, rndA.length());
    assertNotEquals(rndA, rndB, "the fork's kernel RNG was reseeded");

    // suspend: the complete state, then QEMU ends
    long beforeSuspend = count(ca2);
    announcePause(ca2, "snap-a", 1);
    Path suspendDir = base.resolve("snapshots/suspend");
    long qemuPid = a.pids().get(0);
    Snapshot s = a.suspend(suspendDir);
    System.out.printf("suspend: %d ms (guest stopped for the last %d ms); state %d KiB, disk %d MiB (%d KiB allocated)%n",
        s.elapsedMillis(), s.pausedMillis(), s.stateBytes() >> 10, s.diskBytes() >> 20, s.diskAllocatedBytes() >> 10);
    assertTrue(a.exitFuture().isDone(), "QEMU ended");
    assertEquals(List.of(), a.pids());
    assertFalse(Files.exists(Path.of("/proc/" + qemuPid)), "no QEMU process");
    a.destroy();

    // resume as incarnation 2
    long t2 = System.nanoTime();
    Vm a2 = start("snap-a", 2, suspendDir.toString());
    AgentClient ca3 = connect(a2);
    GuestInfo ga = ca3.handshake("snap-a", 2, CALL).get();
    System.out.printf("resume to handshake: %d ms%n", (System.nanoTime() - t2) / 1_000_000);
    assertEquals(2, ga.incarnation());
    assertEquals(counterPid, pidOf(ca3), "the same counter process");
    long resumed = count(ca3);
    assertTrue(resumed >= beforeSuspend, "continues from " + beforeSuspend + ", not reset: " + resumed);
    await().atMost(Duration.ofSeconds(60)).until(() -> count(ca3) > resumed);
    assertEquals("kept", sh(ca3, "cat /before"));
    assertEquals("snap-a 2 fl-snap-a", sh(ca3, "echo $FLOTILLA_SANDBOX_ID $FLOTILLA_INCARNATION $(hostname)"));
    // the old incarnation is refused, with the new secret or the saved one
    ca3.close();
    long uid = Long.parseLong(a2.handle().extra().get("uid"));
    AgentClient older = AgentClients.connect(new AgentAddress(a2.handle().agentSocket(), java.util.OptionalLong.of(uid),
        AgentSecrets.read(a2.handle().stateDir())), Duration.ofSeconds(10));
    agents.add(older);
    ExecutionException stale = assertThrows(ExecutionException.class, () -> older.handshake("snap-a", 1, CALL).get());
    assertTrue(stale.getCause().getMessage().contains("stale incarnation"), stale.getCause().getMessage());
    older.close();
    AgentClient saved = AgentClients.connect(new AgentAddress(a2.handle().agentSocket(), java.util.OptionalLong.of(uid),
        AgentSecrets.read(suspendDir)), Duration.ofSeconds(10));
    agents.add(saved);
    assertThrows(ExecutionException.class, () -> saved.handshake("snap-a", 1, CALL).get(), "the saved secret is stale too");
    // the agent hangs up after refusing a secret: wait for it, or its goodbye reaches the next connection
    saved.closed().get(CALL.toSeconds(), TimeUnit.SECONDS);
    saved.close();
    // the fork is untouched by the source's suspend and resume
    assertTrue(count(cb) > b0);
    AgentClient last = connect(a2);
    last.handshake("snap-a", 2, CALL).get();
    assertEquals("own", sh(last, "[ -e /only-b ] && echo shared || echo own"));
  }

  // A template clone's suspend and resume (plain RAM, no template needed, reborn without mounting its
  // root again, reseeded) is QemuNodeIT's aSandboxStartsFromAWarmedTemplate, through the API.
}
