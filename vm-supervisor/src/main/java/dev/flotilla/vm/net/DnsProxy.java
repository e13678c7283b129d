package dev.flotilla.vm.net;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketAddress;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.DatagramChannel;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.xbill.DNS.Rcode;

/**
 * The node-side DNS proxy of one egress sandbox: the only DNS server the sandbox can reach. The
 * host's NAT table sends every DNS packet of the sandbox's uid, to whatever server it names, to
 * this proxy's own loopback port ({@link NameSets}). The port says which sandbox asks, and the
 * sender's socket must be owned by that sandbox's uid ({@link Senders}), or nothing is answered. It forwards
 * each query to the node's upstream resolvers and, before the answer goes back, puts the
 * addresses answered for a name of the sandbox's allow (deny) list into its allow (deny) set
 * ({@link NameGrants}), so the connection that follows the lookup is matched by name.
 *
 * <p>The sandbox is hostile: queries are parsed and checked before anything is forwarded
 * ({@link DnsMessages}), each is bounded in size, rate, number in flight and time, TCP
 * connections are few and idle out, and upstream answers count only if they answer the question
 * asked, under the node's own random id, from the server asked.
 *
 * <p>One thread per proxy: its selector receives the sandbox's UDP queries and waits for their
 * upstream answers (a fresh socket, so a fresh random port, per query and server), so a sandbox
 * asking for names that never answer holds no thread. Grants (a host command) and DNS-over-TCP
 * connections run on the shared workers.
 */
public final class DnsProxy implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(DnsProxy.class);
  /** Larger queries are dropped: one question with an OPT record fits in far less. */
  static final int MAX_QUERY_BYTES = 1232;
  private static final int MAX_UDP_ANSWER = 65535;

  /**
   * @param maxOutstanding queries of this sandbox in flight at once; more are dropped
   * @param queriesPerSecond sustained rate of this sandbox's queries; more are dropped
   * @param burst queries above the rate accepted at once
   * @param maxTcpConnections DNS-over-TCP connections of this sandbox at once
   * @param upstreamTimeout per upstream server tried
   * @param tcpIdle a sandbox's TCP connection that sends no full query for this long is closed
   * @param minTtl shortest life of a grant (the sandbox connects after it looked up)
   * @param maxTtl longest life of a grant
   * @param maxGrants live addresses per list and sandbox (the kernel set's maxelem is the same)
   * @param setUpdatesPerSecond updates of this sandbox's sets (a host command each), bursts of twice that
   */
  public record Limits(int maxOutstanding, int queriesPerSecond, int burst, int maxTcpConnections, Duration upstreamTimeout,
      Duration tcpIdle, Duration minTtl, Duration maxTtl, int maxGrants, int setUpdatesPerSecond) {
    public static final Limits DEFAULTS = new Limits(16, 100, 200, 4, Duration.ofSeconds(2), Duration.ofSeconds(10),
        Duration.ofSeconds(60), Duration.ofHours(1), 4096, 20);
  }

  /**
   * Whether a query comes from the sandbox: the port alone does not say it (a redirect left by a
   * dead node may point at a port another proxy has taken since, and any local socket can send to
   * it).
   */
  @FunctionalInterface
  public interface Senders {
    /**
     * @param tcp over TCP (else UDP)
     * @param peer where the query came from
     * @param local the proxy's end it came to
     */
    boolean fromSandbox(boolean tcp, InetSocketAddress peer, InetSocketAddress local);

    /**
     * The sandbox's DNS leaves under its own uid (the host's redirect matches that uid): a
     * sender whose socket another uid owns, or that is gone, is not answered.
     */
    static Senders ownedBy(long uid) {
      return (tcp, peer, local) -> {
        try {
          var found = SocketOwners.HOST.owners(tcp, peer, local);
          return !found.isEmpty() && found.stream().allMatch(u -> u == uid);
        } catch (java.io.IOException e) {
          return false;
        }
      };
    }
  }

  private final String label;
  private final Senders senders;
  private final Set<String> allowNames;
  private final Set<String> denyNames;
  private final List<InetSocketAddress> upstream;
  private final NameGrants grants;
  private final Limits limits;
  private final Executor workers;
  private final Selector selector;
  private final List<java.nio.channels.Channel> channels = new ArrayList<>();
  private final int port;
  private final boolean v6;
  private final Semaphore outstanding;
  private final AtomicInteger tcpConnections = new AtomicInteger();
  private final AtomicLong dropped = new AtomicLong();
  private final SecureRandom random = new SecureRandom();
  private final Thread loop;
  private volatile boolean closed;
  private double tokens;
  private long tokensAt = System.nanoTime();
  /** System.nanoTime() of the last warning of each kind (SERVFAIL, STRANGER); 0: none yet */
  private final long[] warned = new long[2];

  private DnsProxy(String label, Senders senders, Set<String> allowNames, Set<String> denyNames, List<InetSocketAddress> upstream,
      NameGrants grants, Limits limits, Executor workers) throws IOException {
    this.label = label;
    this.senders = senders;
    this.allowNames = Set.copyOf(allowNames);
    this.denyNames = Set.copyOf(denyNames);
    this.upstream = List.copyOf(upstream);
    this.grants = grants;
    this.limits = limits;
    this.workers = workers;
    this.outstanding = new Semaphore(limits.maxOutstanding());
    this.tokens = limits.burst();
    this.selector = Selector.open();
    int p = 0;
    boolean six = false;
    IOException last = null;
    for (int attempt = 0; attempt < 20 && p == 0; attempt++) {
      List<java.nio.channels.Channel> bound = new ArrayList<>();
      try {
        int candidate = bindUdp(bound, InetAddress.getByName("127.0.0.1"), 0);
        bindTcp(bound, InetAddress.getByName("127.0.0.1"), candidate);
        six = bindLoopback6(bound, candidate);
        channels.addAll(bound);
        p = candidate;
      } catch (IOException e) {
        last = e;
        for (var c : bound) c.close();
      }
    }
    if (p == 0) {
      selector.close();
      throw new IOException("cannot bind the DNS proxy of " + label + " to a loopback port: " + (last == null ? "" : last.getMessage()));
    }
    this.port = p;
    this.v6 = six;
    loop = new Thread(this::run, "flotilla-dns-" + label);
    loop.setDaemon(true);
  }

  /**
   * Binds a proxy to a free port of 127.0.0.1 (and the same of ::1 if the host has it) and starts it.
   *
   * @param senders which senders are the sandbox's (others get nothing: {@link Senders#ownedBy})
   * @param allowNames names whose answers grant (lower case, no final dot)
   * @param denyNames names whose answers deny; a name in both lists only denies
   * @param workers runs grants (a host command each) and DNS-over-TCP connections (shared by the node's proxies)
   */
  public static DnsProxy start(String label, Senders senders, Set<String> allowNames, Set<String> denyNames,
      List<InetSocketAddress> upstream, NameGrants grants, Limits limits, Executor workers) throws IOException {
    if (upstream.isEmpty()) throw new IllegalArgumentException("no upstream DNS server");
    DnsProxy p = new DnsProxy(label, senders, allowNames, denyNames, upstream, grants, limits, workers);
    p.loop.start();
    return p;
  }

  /** The loopback port (UDP and TCP) that the sandbox's DNS is redirected to. */
  public int port() {
    return port;
  }

  /** Whether it also listens on ::1 (else the sandbox's IPv6 DNS is refused, not redirected). */
  public boolean ipv6() {
    return v6;
  }

  public Limits limits() {
    return limits;
  }

  /** Queries dropped (rate, size, load, malformed beyond an answer): tests and diagnostics. */
  public long dropped() {
    return dropped.get();
  }

  private int bindUdp(List<java.nio.channels.Channel> bound, InetAddress a, int p) throws IOException {
    DatagramChannel c = DatagramChannel.open(a instanceof Inet6Address ? java.net.StandardProtocolFamily.INET6 : java.net.StandardProtocolFamily.INET);
    bound.add(c);
    c.bind(new InetSocketAddress(a, p));
    c.configureBlocking(false);
    c.register(selector, SelectionKey.OP_READ);
    return ((InetSocketAddress) c.getLocalAddress()).getPort();
  }

  private void bindTcp(List<java.nio.channels.Channel> bound, InetAddress a, int p) throws IOException {
    ServerSocketChannel c = ServerSocketChannel.open();
    bound.add(c);
    c.bind(new InetSocketAddress(a, p), 16);
    c.configureBlocking(false);
    c.register(selector, SelectionKey.OP_ACCEPT);
  }

  /** ::1 on the same port; false if the host has no IPv6 loopback (the port being taken is an error: try another). */
  private boolean bindLoopback6(List<java.nio.channels.Channel> bound, int p) throws IOException {
    InetAddress six = InetAddress.getByName("::1");
    List<java.nio.channels.Channel> mine = new ArrayList<>();
    try {
      bindUdp(mine, six, p);
      bindTcp(mine, six, p);
      bound.addAll(mine);
      return true;
    } catch (java.net.BindException e) {
      for (var c : mine) c.close();
      if (e.getMessage() != null && e.getMessage().contains("in use")) throw e;
      return false;
    } catch (java.net.SocketException | UnsupportedOperationException e) {
      for (var c : mine) c.close();
      return false;
    }
  }

  /** A UDP query of the sandbox waiting for an upstream answer, on the selector thread (no thread waits for it). */
  private static final class Pending {
    final DatagramChannel client;
    final SocketAddress from;
    final DnsMessages.Query query;
    final int id;
    final byte[] upstreamQuery;
    int server = -1;
    long deadline;
    DatagramChannel channel;

    Pending(DatagramChannel client, SocketAddress from, DnsMessages.Query query, int id, byte[] upstreamQuery) {
      this.client = client;
      this.from = from;
      this.query = query;
      this.id = id;
      this.upstreamQuery = upstreamQuery;
    }
  }

  private final List<Pending> pending = new ArrayList<>(); // the selector thread's only

  private void run() {
    ByteBuffer buf = ByteBuffer.allocate(MAX_UDP_ANSWER);
    try {
      while (!closed) {
        var next = pending.stream().mapToLong(p -> p.deadline - System.nanoTime()).min();
        if (next.isEmpty()) {
          selector.select();
        } else if (next.getAsLong() >= 1_000_000) {
          selector.select(next.getAsLong() / 1_000_000);
        } else {
          selector.selectNow();
        }
        for (var it = selector.selectedKeys().iterator(); it.hasNext(); ) {
          SelectionKey k = it.next();
          it.remove();
          if (!k.isValid()) continue;
          if (k.attachment() instanceof Pending p && k.isReadable()) {
            buf.clear();
            try {
              if (p.channel.receive(buf) == null) continue;
            } catch (IOException e) {
              askNext(p); // an ICMP error: nothing listens there
              continue;
            }
            byte[] answer = java.util.Arrays.copyOf(buf.array(), buf.position());
            unlessItFails(() -> upstreamAnswered(p, answer));
          } else if (k.channel() instanceof DatagramChannel udp && k.isReadable()) {
            buf.clear();
            SocketAddress from = udp.receive(buf);
            if (from == null) continue;
            if (buf.position() > MAX_QUERY_BYTES || !admit() || !fromSandbox(false, from, udp.getLocalAddress())) {
              dropped.incrementAndGet();
              continue;
            }
            byte[] query = java.util.Arrays.copyOf(buf.array(), buf.position());
            unlessItFails(() -> startUdp(udp, from, query));
          } else if (k.channel() instanceof ServerSocketChannel server && k.isAcceptable()) {
            SocketChannel s = server.accept();
            if (s == null) continue;
            if (!fromSandbox(true, s.getRemoteAddress(), server.getLocalAddress())) {
              dropped.incrementAndGet();
              s.close();
              continue;
            }
            if (tcpConnections.incrementAndGet() > limits.maxTcpConnections()) {
              tcpConnections.decrementAndGet();
              dropped.incrementAndGet();
              s.close();
              continue;
            }
            s.configureBlocking(true);
            if (!execute(() -> serveTcp(s))) {
              tcpConnections.decrementAndGet();
              s.close();
            }
          }
        }
        long now = System.nanoTime();
        for (Pending p : List.copyOf(pending)) {
          if (p.deadline - now <= 0) askNext(p);
        }
      }
    } catch (ClosedSelectorException e) {
      // closed
    } catch (IOException | RuntimeException e) {
      if (!closed) log.error("DNS proxy of {} stopped: {}", label, e.toString());
    } finally {
      for (Pending p : pending) closeUpstream(p);
      pending.clear();
    }
  }

  /**
   * Handles one message. A message this proxy fails on (a bug: the parsers refuse what they do
   * not take) is dropped, and the proxy serves the next one: one packet must not stop it.
   */
  private void unlessItFails(Runnable handle) {
    try {
      handle.run();
    } catch (RuntimeException e) {
      dropped.incrementAndGet();
      log.warn("DNS proxy of {}: a message dropped on an unexpected failure: {}", label, e.toString());
    }
  }

  private boolean fromSandbox(boolean tcp, SocketAddress peer, SocketAddress local) {
    if (senders.fromSandbox(tcp, (InetSocketAddress) peer, (InetSocketAddress) local)) return true;
    if (mayWarn(STRANGER)) {
      log.warn("DNS proxy of {}: a query from {} ({}), which is not the sandbox's: dropped (further ones within a minute"
          + " are not logged)", label, peer, tcp ? "TCP" : "UDP");
    }
    return false;
  }

  /** The rate limit: a token bucket of {@code burst} refilled at {@code queriesPerSecond}. */
  private synchronized boolean admit() {
    long now = System.nanoTime();
    tokens = Math.min(limits.burst(), tokens + (now - tokensAt) / 1e9 * limits.queriesPerSecond());
    tokensAt = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }

  /** A sandbox's UDP query: checked, then sent to the first upstream server (selector thread). */
  private void startUdp(DatagramChannel client, SocketAddress from, byte[] wire) {
    DnsMessages.Query q;
    try {
      q = DnsMessages.parseQuery(wire);
    } catch (DnsMessages.Rejected r) {
      if (r.query == null) dropped.incrementAndGet();
      else reply(client, from, DnsMessages.error(r.query, r.rcode));
      return;
    }
    if (!outstanding.tryAcquire()) {
      dropped.incrementAndGet();
      return;
    }
    int id = random.nextInt(0x10000);
    Pending p = new Pending(client, from, q, id, DnsMessages.upstream(q, id));
    pending.add(p);
    askNext(p);
  }

  /** Asks the next upstream server from a fresh socket (a fresh random port), or gives up with SERVFAIL. */
  private void askNext(Pending p) {
    closeUpstream(p);
    while (++p.server < upstream.size()) {
      try {
        DatagramChannel c = DatagramChannel.open();
        p.channel = c;
        c.configureBlocking(false);
        c.connect(upstream.get(p.server));
        c.write(ByteBuffer.wrap(p.upstreamQuery));
        c.register(selector, SelectionKey.OP_READ, p);
        p.deadline = System.nanoTime() + limits.upstreamTimeout().toNanos();
        return;
      } catch (IOException e) {
        log.debug("DNS proxy of {}: cannot ask {}: {}", label, upstream.get(p.server), e.getMessage());
        closeUpstream(p);
      }
    }
    done(p, DnsMessages.error(p.query.message(), Rcode.SERVFAIL));
  }

  /** A datagram from the server asked: the answer if it answers the question under the node's id, else ignored (a spoof or a stray). */
  private void upstreamAnswered(Pending p, byte[] response) {
    DnsMessages.Answer a;
    try {
      a = DnsMessages.parseAnswer(p.query, p.id, response);
    } catch (IOException notOurs) {
      return;
    }
    if (a.rcode() == Rcode.SERVFAIL || a.rcode() == Rcode.REFUSED) {
      askNext(p);
      return;
    }
    closeUpstream(p);
    pending.remove(p);
    if (!needsGrant(p.query, a)) {
      reply(p.client, p.from, DnsMessages.withId(response, p.query.id()));
      outstanding.release();
      return;
    }
    // a grant runs a host command: not on the selector thread
    if (!execute(() -> {
      try {
        reply(p.client, p.from, granted(p.query, a, response));
      } finally {
        outstanding.release();
      }
    })) {
      reply(p.client, p.from, DnsMessages.error(p.query.message(), Rcode.SERVFAIL));
      outstanding.release();
    }
  }

  private void done(Pending p, byte[] answer) {
    closeUpstream(p);
    pending.remove(p);
    reply(p.client, p.from, answer);
    outstanding.release();
  }

  private static void closeUpstream(Pending p) {
    if (p.channel == null) return;
    try {
      p.channel.close();
    } catch (IOException e) {
      // nothing held
    }
    p.channel = null;
  }

  private void reply(DatagramChannel client, SocketAddress to, byte[] answer) {
    if (answer == null || closed) return;
    try {
      client.send(ByteBuffer.wrap(answer), to);
    } catch (IOException e) {
      log.debug("DNS proxy of {}: cannot answer {}: {}", label, to, e.getMessage());
    }
  }

  private boolean execute(Runnable r) {
    try {
      workers.execute(r);
      return true;
    } catch (RejectedExecutionException e) {
      return false;
    }
  }

  private void serveTcp(SocketChannel s) {
    try (s; Socket socket = s.socket()) {
      var in = socket.getInputStream();
      DataOutputStream out = new DataOutputStream(socket.getOutputStream());
      while (!closed) {
        // each whole query within tcpIdle of the last answer: a byte now and then keeps no connection
        long deadline = System.nanoTime() + limits.tcpIdle().toNanos();
        byte[] prefix = readFully(socket, in, 2, deadline);
        if (prefix == null) return;
        int len = ((prefix[0] & 0xff) << 8) | (prefix[1] & 0xff);
        if (len > MAX_QUERY_BYTES || len < 12) {
          dropped.incrementAndGet();
          return;
        }
        byte[] query = readFully(socket, in, len, deadline);
        if (query == null) return;
        if (!admit() || !outstanding.tryAcquire()) {
          dropped.incrementAndGet();
          return;
        }
        byte[] answer;
        try {
          answer = answerTcp(query);
        } finally {
          outstanding.release();
        }
        if (answer == null) return;
        out.writeShort(answer.length);
        out.write(answer);
        out.flush();
      }
    } catch (IOException e) {
      log.debug("DNS proxy of {}: TCP connection ended: {}", label, e.getMessage());
    } finally {
      tcpConnections.decrementAndGet();
    }
  }

  /** {@code n} bytes by {@code deadline}, or null at the end of the stream or the deadline. */
  private static byte[] readFully(Socket socket, java.io.InputStream in, int n, long deadline) throws IOException {
    byte[] b = new byte[n];
    int got = 0;
    while (got < n) {
      long left = (deadline - System.nanoTime()) / 1_000_000;
      if (left <= 0) return null;
      socket.setSoTimeout((int) left);
      int r;
      try {
        r = in.read(b, got, n - got);
      } catch (SocketTimeoutException e) {
        return null;
      }
      if (r < 0) return null;
      got += r;
    }
    return b;
  }

  /** The answer to a TCP query (after any grant took effect), or null to give none; blocks (a worker's). */
  byte[] answerTcp(byte[] wire) {
    DnsMessages.Query q;
    try {
      q = DnsMessages.parseQuery(wire);
    } catch (DnsMessages.Rejected r) {
      if (r.query == null) {
        dropped.incrementAndGet();
        return null;
      }
      return DnsMessages.error(r.query, r.rcode);
    }
    int id = random.nextInt(0x10000);
    byte[] upstreamQuery = DnsMessages.upstream(q, id);
    for (InetSocketAddress server : upstream) {
      if (closed) return null;
      byte[] response;
      DnsMessages.Answer a;
      try {
        response = askTcp(server, upstreamQuery);
        a = DnsMessages.parseAnswer(q, id, response);
      } catch (IOException e) {
        log.debug("DNS proxy of {}: {} did not answer {}: {}", label, server, q.name(), e.getMessage());
        continue;
      }
      if (a.rcode() == Rcode.SERVFAIL || a.rcode() == Rcode.REFUSED) continue;
      return needsGrant(q, a) ? granted(q, a, response) : DnsMessages.withId(response, q.id());
    }
    return DnsMessages.error(q.message(), Rcode.SERVFAIL);
  }

  private boolean needsGrant(DnsMessages.Query q, DnsMessages.Answer a) {
    return !a.addresses().isEmpty() && (denyNames.contains(q.name()) || allowNames.contains(q.name()));
  }

  /** Grants the answer's addresses to the list that names the question (deny wins), then the answer; SERVFAIL if the grant failed. */
  private byte[] granted(DnsMessages.Query q, DnsMessages.Answer a, byte[] response) {
    boolean deny = denyNames.contains(q.name());
    try {
      grants.grant(deny, a.addresses(), a.ttlSeconds());
    } catch (IOException | RuntimeException e) {
      warn("cannot " + (deny ? "deny" : "allow") + " the addresses of " + q.name() + ": " + e.getMessage());
      return DnsMessages.error(q.message(), Rcode.SERVFAIL);
    }
    return DnsMessages.withId(response, q.id());
  }

  private byte[] askTcp(InetSocketAddress server, byte[] query) throws IOException {
    int timeout = (int) limits.upstreamTimeout().toMillis();
    try (Socket s = new Socket()) {
      s.connect(server, timeout);
      s.setSoTimeout(timeout);
      DataOutputStream out = new DataOutputStream(s.getOutputStream());
      out.writeShort(query.length);
      out.write(query);
      out.flush();
      DataInputStream in = new DataInputStream(s.getInputStream());
      int len = in.readUnsignedShort();
      byte[] r = in.readNBytes(len);
      if (r.length < len) throw new EOFException("short answer");
      return r;
    }
  }

  private void warn(String what) {
    if (!mayWarn(SERVFAIL)) return;
    log.warn("DNS proxy of {}: {} (answered SERVFAIL; further warnings within a minute are not logged)", label, what);
  }

  private static final int SERVFAIL = 0;
  private static final int STRANGER = 1;

  /** At most one warning of each kind a minute: what a sandbox sends must not flood the node's log. */
  private synchronized boolean mayWarn(int kind) {
    long now = System.nanoTime();
    if (warned[kind] != 0 && now - warned[kind] < 60_000_000_000L) return false;
    warned[kind] = now;
    return true;
  }

  /** Stops listening; queries in flight get no answer. */
  @Override
  public void close() {
    closed = true;
    try {
      selector.close();
    } catch (IOException e) {
      // nothing held
    }
    for (var c : channels) {
      try {
        c.close();
      } catch (IOException e) {
        // nothing held
      }
    }
    if (Thread.currentThread() != loop) {
      try {
        loop.join(2000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
