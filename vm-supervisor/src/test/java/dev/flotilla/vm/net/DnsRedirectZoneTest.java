package dev.flotilla.vm.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The host's DNS redirect of a sandbox uid, on the real firewall and connection tracker, when the
 * sandbox's helper sends from a port the node has just used towards the same server: the kernel's
 * NAT follows a tracked flow, so without a tracking zone of the uid's own the sandbox's query took
 * the node's flow, past the redirect, and was lost for the tracker's timeout (a sandbox's lookup
 * failing after 10 s, about 1 in 100 while the proxy asked the same server).
 */
class DnsRedirectZoneTest {
  /** Past the subordinate ids of setup-host.sh: no sandbox has it. */
  private static final long UID = 16777216L + 268435456L + 9;
  private static final InetSocketAddress SERVER = new InetSocketAddress(loopback2(), 53);

  private static InetAddress loopback2() {
    try {
      return InetAddress.getByName("127.0.0.2");
    } catch (java.net.UnknownHostException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Sends "sandbox" from the port given to 127.0.0.2:53 and prints the answer and where it came from. */
  private static final String SENDER = """
      import java.net.*;
      public class Sender {
        public static void main(String[] a) throws Exception {
          try (DatagramSocket s = new DatagramSocket(new InetSocketAddress(Integer.parseInt(a[0])))) {
            s.send(new DatagramPacket("sandbox".getBytes(), 7, new InetSocketAddress("127.0.0.2", 53)));
            s.setSoTimeout(5000);
            DatagramPacket p = new DatagramPacket(new byte[64], 64);
            s.receive(p);
            System.out.println("answer " + new String(p.getData(), 0, p.getLength()) + " from " + p.getSocketAddress());
          } catch (SocketTimeoutException e) {
            System.out.println("no answer");
          }
        }
      }
      """;

  @Test
  void aSandboxQueryFromAPortTheNodeJustUsedIsRedirectedAndAnswered() throws Exception {
    assumeTrue(NameSets.kernelSupport().isEmpty(), "needs root, iptables and ipset: " + NameSets.kernelSupport());
    Path dir = Files.createTempDirectory("fl-zone", PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwxr-xr-x")));
    Path source = dir.resolve("Sender.java");
    Files.writeString(source, SENDER);
    Files.setPosixFilePermissions(source, PosixFilePermissions.fromString("rw-r--r--"));
    NameSets sets = new NameSets(UID);
    List<String> got = new CopyOnWriteArrayList<>();
    try (DatagramSocket proxy = new DatagramSocket(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))) {
      // the proxy's stand-in: what it receives, and an answer to it
      Thread answering = new Thread(() -> {
        byte[] b = new byte[64];
        while (!proxy.isClosed()) {
          try {
            DatagramPacket p = new DatagramPacket(b, b.length);
            proxy.receive(p);
            got.add(new String(p.getData(), 0, p.getLength(), StandardCharsets.UTF_8) + " from port " + p.getPort());
            proxy.send(new DatagramPacket("answer".getBytes(StandardCharsets.UTF_8), 6, p.getSocketAddress()));
          } catch (java.io.IOException e) {
            return;
          }
        }
      });
      answering.start();
      sets.installRedirect("flotilla-test:zone", proxy.getLocalPort(), false);
      int port;
      // the node's own query to the server, from a port of its own (nothing listens there: the flow is tracked all the same)
      try (DatagramSocket node = new DatagramSocket(new InetSocketAddress(0))) {
        port = node.getLocalPort();
        node.send(new DatagramPacket("node".getBytes(StandardCharsets.UTF_8), 4, SERVER));
      }
      // then the sandbox's helper, from that port, to that server
      String java = ProcessHandle.current().info().command().orElseThrow();
      Process p = new ProcessBuilder("setpriv", "--reuid", Long.toString(UID), "--regid", Long.toString(UID), "--clear-groups", java,
          "-XX:-UsePerfData", "-Xshare:off", source.toString(), Integer.toString(port))
          .directory(dir.toFile()).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the sender ends");
      assertEquals(List.of("sandbox from port " + port), got, "the proxy gets the sandbox's query (sender: " + out.strip() + ")");
      assertTrue(out.contains("answer answer from /127.0.0.2:53"), "the answer reaches the sandbox from the server it asked: " + out);
    } finally {
      sets.remove();
      try (var files = Files.list(dir)) {
        files.forEach(f -> f.toFile().delete());
      }
      Files.delete(dir);
    }
    assertTrue(!sets.present(), "nothing of the uid's left");
  }
}
