package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.flotilla.vm.Vm;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class ProcessSmokeTest {
  @Test
  void runs() throws Exception {
    try (TestSandboxes s = new TestSandboxes()) {
      long t0 = System.nanoTime();
      Vm vm = s.start(s.spec());
      var c = s.connect(vm);
      System.out.println("ready in " + (System.nanoTime() - t0) / 1_000_000 + " ms");
      var r = TestSandboxes.run(c, Duration.ofSeconds(10), "sh", "-c", "id; hostname; ls /; cat /proc/self/status | grep -E 'Seccomp|NoNewPriv|Cap'; cat /proc/self/uid_map; unshare -U true; echo unshare=$?; mount -t tmpfs x /mnt; echo mount=$?; ls /.fl; touch /.fl/x; echo touch=$?");
      System.out.println(r.stdout() + r.stderr());
      assertEquals(0, r.status().exitCode());
    }
  }
}
