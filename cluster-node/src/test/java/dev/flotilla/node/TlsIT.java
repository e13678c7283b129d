package dev.flotilla.node;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.cli.Cli;
import dev.flotilla.cli.CliContext;
import dev.flotilla.node.tls.DevCertificates;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.Address;
import org.apache.pekko.cluster.Cluster;
import org.apache.pekko.cluster.Member;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Real nodes with real TLS: gRPC over TLS (server-only and with required client certificates),
 * the CLI against them, mutual TLS on Artery against rogue actor systems, and plaintext refused
 * off loopback. Certificates from {@link DevCertificates} (openssl), as dev-cluster makes them.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TlsIT {
  private Path dir;
  private DevCertificates ca;
  private DevCertificates otherCa;
  private TestNode node;        // gRPC TLS (no client certificates) + Artery mutual TLS
  private TestNode mtlsNode;    // gRPC TLS, client certificates required
  private final List<ActorSystem> systems = new ArrayList<>();

  @BeforeAll
  void start() throws Exception {
    dir = TestNode.shortTempDir();
    ca = DevCertificates.createCa(dir.resolve("ca"), "test-cluster-ca")
        .issue("node", DevCertificates.CLUSTER_NAME, List.of("127.0.0.1", "localhost"))
        .issue("peer", DevCertificates.CLUSTER_NAME, List.of("127.0.0.1"))
        .issue("client", "flotilla-client", List.of());
    otherCa = DevCertificates.createCa(dir.resolve("other"), "someone-elses-ca")
        .issue("rogue", DevCertificates.CLUSTER_NAME, List.of("127.0.0.1"));
    CompletableFuture<TestNode> a = CompletableFuture.supplyAsync(() -> startNode("a", ConfigFactory.parseMap(Map.of(
        "flotilla.node.grpc.tls.cert-file", ca.cert("node").toString(),
        "flotilla.node.grpc.tls.key-file", ca.key("node").toString(),
        "flotilla.cluster.tls.cert-file", ca.cert("node").toString(),
        "flotilla.cluster.tls.key-file", ca.key("node").toString(),
        "flotilla.cluster.tls.ca-file", ca.caCert().toString()))));
    CompletableFuture<TestNode> b = CompletableFuture.supplyAsync(() -> startNode("b", ConfigFactory.parseMap(Map.of(
        "flotilla.node.grpc.tls.cert-file", ca.cert("node").toString(),
        "flotilla.node.grpc.tls.key-file", ca.key("node").toString(),
        "flotilla.node.grpc.tls.client-ca-file", ca.caCert().toString()))));
    node = a.get(120, TimeUnit.SECONDS);
    mtlsNode = b.get(120, TimeUnit.SECONDS);
  }

  private TestNode startNode(String name, Config extra) {
    try {
      Path d = dir.resolve(name);
      Files.createDirectories(d);
      return new TestNode(d, null, extra).start();
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @AfterAll
  void stop() throws IOException {
    for (ActorSystem s : systems) s.terminate();
    for (ActorSystem s : systems) {
      try {
        s.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
      } catch (Exception ignored) {
        // best effort
      }
    }
    for (TestNode n : new TestNode[] {node, mtlsNode}) {
      if (n != null) {
        n.close();
        n.killVms();
      }
    }
    try (Stream<Path> s = Files.walk(dir)) {
      s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  record Run(int code, String out, String err) {}

  private Run cli(TestNode n, Map<String, String> env, String... args) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    Map<String, String> e = new HashMap<>(env);
    e.put(CliContext.ENV_ENDPOINT, "127.0.0.1:" + n.node.grpcPort());
    e.putIfAbsent(CliContext.ENV_TOKEN, n.defaultToken());
    int code = new Cli(new CliContext(e, dir, new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8))).run(args);
    return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  void theCliReachesATlsNodeOnlyWhenItTrustsItsCa() throws Exception {
    Run ok = cli(node, Map.of(), "--tls", "--ca", ca.caCert().toString(), "--timeout", "20s", "ls");
    assertEquals(0, ok.code(), ok.err());
    assertTrue(ok.out().startsWith("ID"), ok.out());
    // the same by environment, with the token from a file
    Path tokenFile = dir.resolve("a.token");
    Files.writeString(tokenFile, node.defaultToken() + "\n");
    Run env = cli(node, Map.of(CliContext.ENV_TLS, "1", CliContext.ENV_CA, ca.caCert().toString(),
        CliContext.ENV_TOKEN_FILE, tokenFile.toString(), CliContext.ENV_TOKEN, ""), "ls");
    assertEquals(0, env.code(), env.err());

    Run untrusted = cli(node, Map.of(), "--tls", "--timeout", "20s", "ls");
    assertEquals(3, untrusted.code(), untrusted.err());
    assertTrue(untrusted.err().contains("not from a CA you trust"), untrusted.err());
    Run otherCaOnly = cli(node, Map.of(), "--ca", otherCa.caCert().toString(), "--timeout", "20s", "ls");
    assertEquals(3, otherCaOnly.code(), otherCaOnly.err());
    assertTrue(otherCaOnly.err().contains("not from a CA you trust"), otherCaOnly.err());
    Run plaintext = cli(node, Map.of(), "--timeout", "20s", "ls");
    assertEquals(3, plaintext.code(), plaintext.err());
    assertTrue(plaintext.err().contains("does it serve TLS?"), plaintext.err());
  }

  @Test
  void aNodeThatRequiresClientCertificatesRefusesClientsWithoutOne() throws Exception {
    Run ok = cli(mtlsNode, Map.of(), "--ca", ca.caCert().toString(), "--cert", ca.cert("client").toString(),
        "--key", ca.key("client").toString(), "--timeout", "20s", "ls");
    assertEquals(0, ok.code(), ok.err());

    Run none = cli(mtlsNode, Map.of(), "--ca", ca.caCert().toString(), "--timeout", "20s", "ls");
    assertEquals(3, none.code(), none.err());
    assertTrue(none.err().contains("wants a client certificate"), none.err());

    Run foreign = cli(mtlsNode, Map.of(CliContext.ENV_CA, ca.caCert().toString(), CliContext.ENV_CERT,
        otherCa.cert("rogue").toString(), CliContext.ENV_KEY, otherCa.key("rogue").toString()), "--timeout", "20s", "ls");
    assertEquals(3, foreign.code(), foreign.err());
    assertTrue(foreign.err().contains("TLS handshake failed"), foreign.err());
  }

  /** An actor system named like the cluster, on loopback, with the given Artery transport settings. */
  private ActorSystem system(String transport) {
    Config c = ConfigFactory.parseString(transport + "\n"
            + "pekko.actor.provider = cluster\n"
            + "pekko.remote.artery.canonical.hostname = 127.0.0.1\n"
            + "pekko.remote.artery.canonical.port = 0\n"
            + "pekko.cluster.seed-nodes = []\n"
            + "pekko.coordinated-shutdown.run-by-jvm-shutdown-hook = off\n")
        .withFallback(ConfigFactory.load()).resolve();
    ActorSystem s = ActorSystem.create("flotilla", c);
    systems.add(s);
    return s;
  }

  private static String tls(DevCertificates certs, String name, DevCertificates trust) {
    return "pekko.remote.artery.transport = tls-tcp\n"
        + "pekko.remote.artery.ssl.ssl-engine-provider = \"org.apache.pekko.remote.artery.tcp.ssl.RotatingKeysSSLEngineProvider\"\n"
        + "pekko.remote.artery.ssl.rotating-keys-engine.cert-file = \"" + certs.cert(name) + "\"\n"
        + "pekko.remote.artery.ssl.rotating-keys-engine.key-file = \"" + certs.key(name) + "\"\n"
        + "pekko.remote.artery.ssl.rotating-keys-engine.ca-cert-file = \"" + trust.caCert() + "\"\n";
  }

  /** Pekko's ConfigSSLEngineProvider (PKCS12 stores, mutual TLS, no subject-name check) with {@code name}'s certificate. */
  private String keystoreTls(DevCertificates certs, String name) throws Exception {
    char[] pw = "changeit".toCharArray();
    java.security.KeyStore ks = java.security.KeyStore.getInstance("PKCS12");
    ks.load(null, null);
    ks.setKeyEntry("k", dev.flotilla.node.tls.PemFiles.privateKey(certs.key(name)), pw,
        dev.flotilla.node.tls.PemFiles.certificates(certs.cert(name)).toArray(java.security.cert.Certificate[]::new));
    Path keyStore = dir.resolve(name + ".p12");
    try (var out = Files.newOutputStream(keyStore)) {
      ks.store(out, pw);
    }
    java.security.KeyStore ts = java.security.KeyStore.getInstance("PKCS12");
    ts.load(null, null);
    ts.setCertificateEntry("ca", dev.flotilla.node.tls.PemFiles.certificates(certs.caCert()).get(0));
    Path trustStore = dir.resolve(name + "-trust.p12");
    try (var out = Files.newOutputStream(trustStore)) {
      ts.store(out, pw);
    }
    String c = "pekko.remote.artery.ssl.config-ssl-engine.";
    return "pekko.remote.artery.transport = tls-tcp\n"
        + "pekko.remote.artery.ssl.ssl-engine-provider = \"org.apache.pekko.remote.artery.tcp.ConfigSSLEngineProvider\"\n"
        + c + "key-store = \"" + keyStore + "\"\n" + c + "trust-store = \"" + trustStore + "\"\n"
        + c + "key-store-password = changeit\n" + c + "key-password = changeit\n" + c + "trust-store-password = changeit\n"
        + c + "hostname-verification = off\n";
  }

  @Test
  void aProcessWithoutTheClustersCertificateNeitherJoinsNorReachesAnActor() throws Exception {
    org.apache.pekko.actor.typed.ActorSystem<Void> typed = node.node.system();
    Address target = Cluster.get(typed.classicSystem()).selfAddress();
    String sharding = target + "/system/sharding/Sandbox";

    // control: a process with a certificate from the cluster's CA reaches the sharding region...
    ActorSystem friend = system(tls(ca, "peer", ca));
    ActorRef region = friend.actorSelection(sharding).resolveOne(Duration.ofSeconds(20)).toCompletableFuture()
        .get(30, TimeUnit.SECONDS);
    assertTrue(region.path().toString().endsWith("/system/sharding/Sandbox"), region.toString());
    // ... and joins: mutual TLS is what members speak (then it leaves again, cleanly)
    Cluster nodeCluster = Cluster.get(typed.classicSystem());
    Address friendAddress = Cluster.get(friend).selfAddress();
    Cluster.get(friend).join(target);
    await().atMost(Duration.ofSeconds(30)).until(() -> upMembers(nodeCluster).contains(friendAddress));
    Cluster.get(friend).leave(friendAddress);
    await().atMost(Duration.ofSeconds(30)).until(() -> allMembers(nodeCluster).equals(List.of(target)));

    ActorSystem noCert = system("pekko.remote.artery.transport = tcp");
    ActorSystem foreignCa = system(tls(otherCa, "rogue", otherCa));
    ActorSystem foreignTrustingUs = system(tls(otherCa, "rogue", ca));
    // a certificate of the cluster's own CA without the nodes' subject name, from a process that checks no
    // names itself (Pekko's keystore-based provider): the node's own peer check refuses it
    ActorSystem sameCaOtherName = system(keystoreTls(ca, "client"));
    List<ActorSystem> rogues = List.of(noCert, foreignCa, foreignTrustingUs, sameCaOtherName);
    List<CompletableFuture<ActorRef>> identified = new ArrayList<>();
    for (ActorSystem r : rogues) {
      Cluster.get(r).join(target);
      identified.add(r.actorSelection(sharding).resolveOne(Duration.ofSeconds(8)).toCompletableFuture());
    }
    for (int i = 0; i < rogues.size(); i++) {
      CompletableFuture<ActorRef> f = identified.get(i);
      Exception e = assertThrows(Exception.class, () -> f.get(30, TimeUnit.SECONDS), "rogue " + i + " reached the region");
      assertTrue(String.valueOf(e.getCause()).contains("ActorNotFound"), String.valueOf(e));
    }
    // eight seconds of joining later: the node is still alone, and no rogue sees it
    assertEquals(List.of(target), allMembers(nodeCluster));
    for (ActorSystem r : rogues) {
      for (Member m : Cluster.get(r).state().getMembers()) {
        assertTrue(!m.address().equals(target), "a rogue sees the node as a member");
      }
    }
  }

  private static List<Address> allMembers(Cluster c) {
    List<Address> all = new ArrayList<>();
    for (Member m : c.state().getMembers()) all.add(m.address());
    return all;
  }

  private static List<Address> upMembers(Cluster c) {
    List<Address> up = new ArrayList<>();
    for (Member m : c.state().getMembers()) {
      if (m.status() == org.apache.pekko.cluster.MemberStatus.up()) up.add(m.address());
    }
    return up;
  }

  @Test
  void plaintextOffLoopbackIsRefusedAtStartWithWhatToSet() throws Exception {
    Path d = dir.resolve("refused");
    Files.createDirectories(d);
    IllegalArgumentException grpc = assertThrows(IllegalArgumentException.class, () -> new TestNode(d, null,
        ConfigFactory.parseMap(Map.of("flotilla.node.grpc.interface", "0.0.0.0"))).start());
    assertTrue(grpc.getMessage().contains("flotilla.node.grpc.tls.cert-file"), grpc.getMessage());
    assertTrue(grpc.getMessage().contains("FLOTILLA_GRPC_TLS_CERT"), grpc.getMessage());

    IllegalArgumentException artery = assertThrows(IllegalArgumentException.class, () -> new TestNode(d, null,
        ConfigFactory.parseMap(Map.of("pekko.remote.artery.bind.hostname", "0.0.0.0"))).start());
    assertTrue(artery.getMessage().contains("flotilla.cluster.tls.cert-file"), artery.getMessage());

    // the explicit flag lets it through (on loopback-reachable 0.0.0.0, port 0)
    TestNode allowed = new TestNode(d, null, ConfigFactory.parseMap(Map.of(
        "flotilla.node.grpc.interface", "0.0.0.0", "flotilla.node.grpc.allow-plaintext", true,
        "pekko.remote.artery.bind.hostname", "0.0.0.0", "flotilla.cluster.tls.allow-plaintext", true)));
    try {
      allowed.start();
    } finally {
      allowed.close();
      allowed.killVms();
    }
  }
}
