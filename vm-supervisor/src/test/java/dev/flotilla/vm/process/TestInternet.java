package dev.flotilla.vm.process;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * "The internet" for egress tests: a network namespace made by the test ({@code flnet-<jvm pid>-<n>})
 * joined to the host by a veth pair on a /24 that no interface of this machine uses. The host's
 * end is {@code .1} (a local address of the node: what a sandbox must never reach); the far end
 * has {@code .2} and {@code .3}, two "external hosts" served by one busybox httpd on port
 * {@value #HTTP_PORT} in that namespace ({@code index.html} says which address answered... both
 * answer the same file; {@code big.bin} is 50 MiB for throughput). A tiny DNS server on the host's
 * end ({@code .1:53}, UDP) answers A queries from a map the test changes.
 *
 * <p>close() kills the server, deletes the namespace (which takes the veth pair with it), and a
 * new one first deletes what a killed test JVM left (namespaces named after dead pids).
 *
 * <p>Shared by the egress tests of both drivers (the qemu driver's in {@code dev.flotilla.vm.qemu}).
 */
public final class TestInternet implements AutoCloseable {
  public static final int HTTP_PORT = 8080;
  public static final int BIG_MIB = 50;
  /** What every test destination serves in {@code index.html}. */
  public static final String HELLO = "hello from the internet";
  /** What {@link NodePort} answers: a sandbox that reads it reached the node. */
  public static final String NODE_SECRET = "node-secret";
  private static final java.util.concurrent.atomic.AtomicInteger N = new java.util.concurrent.atomic.AtomicInteger();

  final String netns;
  final String hostVeth;
  public final String subnet; // "10.A.B."
  final Path docRoot;
  /** Name to IPv4 address: what the test DNS server answers. */
  public final Map<String, String> dns = new ConcurrentHashMap<>();
  private final List<Process> servers = new ArrayList<>();
  private DatagramSocket dnsSocket;
  private Thread dnsThread;

  private TestInternet(String netns, String hostVeth, String subnet, Path docRoot) {
    this.netns = netns;
    this.hostVeth = hostVeth;
    this.subnet = subnet;
    this.docRoot = docRoot;
  }

  public static TestInternet create() throws Exception {
    removeStale();
    long pid = ProcessHandle.current().pid();
    int n = N.incrementAndGet();
    String subnet = null;
    java.util.Random r = new java.util.Random();
    String routes = exec("ip", "-4", "route", "show", "table", "all") + exec("ip", "-4", "addr");
    for (int i = 0; i < 50 && subnet == null; i++) {
      String s = "10." + (150 + r.nextInt(40)) + "." + r.nextInt(256) + ".";
      if (!routes.contains(s)) subnet = s;
    }
    if (subnet == null) throw new IllegalStateException("no free /24");
    Path doc = Files.createTempDirectory("flnet-www");
    TestInternet t = new TestInternet("flnet-" + pid + "-" + n, "fln" + Long.toHexString(pid) + "x" + n, subnet, doc);
    try {
      t.build();
    } catch (Exception e) {
      t.close();
      throw e;
    }
    return t;
  }

  public String external() {
    return subnet + "2";
  }

  public String otherExternal() {
    return subnet + "3";
  }

  public String hostEnd() {
    return subnet + "1";
  }

  public String url(String address, String file) {
    return "http://" + address + ":" + HTTP_PORT + "/" + file;
  }

  private void build() throws Exception {
    Files.writeString(docRoot.resolve("index.html"), "hello from the internet\n");
    try (RandomAccessFile f = new RandomAccessFile(docRoot.resolve("big.bin").toFile(), "rw")) {
      f.setLength(BIG_MIB * 1024L * 1024L);
    }
    String peer = hostVeth.replace('x', 'y');
    run("ip", "netns", "add", netns);
    run("ip", "link", "add", hostVeth, "type", "veth", "peer", "name", peer);
    run("ip", "link", "set", peer, "netns", netns);
    run("ip", "addr", "add", hostEnd() + "/24", "dev", hostVeth);
    run("ip", "link", "set", hostVeth, "up");
    run("ip", "-n", netns, "addr", "add", external() + "/24", "dev", peer);
    run("ip", "-n", netns, "addr", "add", otherExternal() + "/24", "dev", peer);
    run("ip", "-n", netns, "link", "set", peer, "up");
    run("ip", "-n", netns, "link", "set", "lo", "up");
    run("ip", "-n", netns, "route", "add", "default", "via", hostEnd());
    servers.add(new ProcessBuilder("nsenter", "--net=/run/netns/" + netns, "busybox", "httpd", "-f", "-p", Integer.toString(HTTP_PORT),
        "-h", docRoot.toString()).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start());
    dnsSocket = new DatagramSocket(new InetSocketAddress(InetAddress.getByName(hostEnd()), 53));
    dnsThread = new Thread(this::serveDns, "test-dns");
    dnsThread.setDaemon(true);
    dnsThread.start();
  }

  /** Answers A queries for the names in {@link #dns}; NXDOMAIN for others, no records for other types. */
  private void serveDns() {
    byte[] buf = new byte[512];
    while (!dnsSocket.isClosed()) {
      try {
        DatagramPacket p = new DatagramPacket(buf, buf.length);
        dnsSocket.receive(p);
        ByteBuffer q = ByteBuffer.wrap(p.getData(), 0, p.getLength());
        int id = q.getShort(0) & 0xffff;
        int pos = 12;
        StringBuilder name = new StringBuilder();
        while (q.get(pos) != 0) {
          int len = q.get(pos);
          if (name.length() > 0) name.append('.');
          name.append(new String(p.getData(), pos + 1, len, StandardCharsets.US_ASCII));
          pos += len + 1;
        }
        pos++;
        int qtype = q.getShort(pos) & 0xffff;
        int qend = pos + 4;
        String answer = dns.get(name.toString().toLowerCase());
        ByteBuffer r = ByteBuffer.allocate(512);
        r.putShort((short) id);
        r.putShort((short) (0x8180 | (answer == null ? 3 : 0)));
        r.putShort((short) 1);
        boolean a = answer != null && qtype == 1;
        r.putShort((short) (a ? 1 : 0));
        r.putShort((short) 0).putShort((short) 0);
        r.put(p.getData(), 12, qend - 12);
        if (a) {
          r.putShort((short) 0xc00c).putShort((short) 1).putShort((short) 1).putInt(1).putShort((short) 4);
          r.put(InetAddress.getByName(answer).getAddress());
        }
        dnsSocket.send(new DatagramPacket(r.array(), r.position(), p.getSocketAddress()));
      } catch (IOException | RuntimeException e) {
        if (dnsSocket.isClosed()) return;
      }
    }
  }

  @Override
  public void close() {
    if (dnsSocket != null) dnsSocket.close();
    for (Process p : servers) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
    }
    exec("ip", "netns", "del", netns);
    exec("ip", "link", "del", hostVeth);
    try (var w = Files.walk(docRoot)) {
      w.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
    } catch (IOException e) {
      // best effort
    }
  }

  /** Namespaces of test JVMs that are gone (their veths go with them). */
  static void removeStale() {
    try (var s = Files.list(Path.of("/run/netns"))) {
      for (Path p : s.toList()) {
        String n = p.getFileName().toString();
        if (!n.matches("flnet-\\d+-\\d+")) continue;
        long pid = Long.parseLong(n.split("-")[1]);
        if (ProcessHandle.of(pid).isEmpty()) exec("ip", "netns", "del", n);
      }
    } catch (IOException e) {
      // no /run/netns: nothing left
    }
  }

  static void run(String... cmd) throws IOException {
    Mounts.run(cmd);
  }

  /** The source address of this host's default route (a local address of the node), else loopback. */
  public static String hostPrimaryAddress() {
    String route = exec("ip", "-4", "route", "get", "1.1.1.1");
    var m = java.util.regex.Pattern.compile("src (\\S+)").matcher(route);
    return m.find() ? m.group(1) : "127.0.0.1";
  }

  /**
   * A listener of the node's own on every address (port 0), answering {@link #NODE_SECRET} to an
   * HTTP request: what no sandbox may reach.
   */
  public static final class NodePort implements AutoCloseable {
    private final java.net.ServerSocket socket;

    public NodePort() throws IOException {
      socket = new java.net.ServerSocket();
      socket.bind(new InetSocketAddress(InetAddress.getByName("0.0.0.0"), 0));
      Thread t = new Thread(() -> {
        while (!socket.isClosed()) {
          try (java.net.Socket s = socket.accept(); var o = s.getOutputStream()) {
            o.write(("HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n" + NODE_SECRET + "\n").getBytes(StandardCharsets.US_ASCII));
          } catch (IOException e) {
            // closed
          }
        }
      }, "node-port");
      t.setDaemon(true);
      t.start();
    }

    public int port() {
      return socket.getLocalPort();
    }

    @Override
    public void close() throws IOException {
      socket.close();
    }
  }

  public static String exec(String... cmd) {
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      p.waitFor(30, TimeUnit.SECONDS);
      return out;
    } catch (IOException e) {
      return "";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "";
    }
  }
}
