package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.Image;
import dev.flotilla.api.v1.ImageServiceClient;
import dev.flotilla.api.v1.ListImagesRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxServiceClient;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.images.Digest;
import dev.flotilla.images.TestRegistry;
import dev.flotilla.images.TestTools;
import dev.flotilla.images.TestUmoci;
import dev.flotilla.node.local.LocalCluster;
import dev.flotilla.node.local.LocalNode;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.apache.pekko.grpc.GrpcClientSettings;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Images across a two-node cluster of real node JVMs ({@link LocalCluster}: embedded PostgreSQL,
 * the process driver) and a real registry on loopback, with one host loss for both scenarios:
 *
 * <ul>
 *   <li>a sandbox from a pulled {@code repo:tag} on node A; the tag moves in the registry; A's host
 *       dies; the sandbox runs again on node B, which never pulled that image, from the same
 *       manifest digest (B pulls it by digest), as its files show from inside;
 *   <li>an image imported on A (the CLI) is listed, runs with its files and belongs to its tenant on
 *       B after A is gone (B fetches it from the shared store in PostgreSQL, verified).
 * </ul>
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SharedImagesClusterIT extends NodeScenarios {
  static final String OTHER = "other";
  static final String OTHER_TOKEN = "other-tenant-token-shared-images-0123";
  static final Duration TAKEOVER = Duration.ofSeconds(120);

  Path work;
  Path busybox;
  TestRegistry registry;
  LocalCluster cluster;
  SandboxServiceClient[] sandboxes = new SandboxServiceClient[3];
  ImageServiceClient[] images = new ImageServiceClient[3];

  @BeforeAll
  void start() throws Exception {
    TestUmoci.requireTools();
    busybox = Path.of(System.getProperty("flotilla.default.image", "../guest-image/out/default-image/rootfs")).toAbsolutePath();
    assertTrue(Files.isDirectory(busybox.resolve("bin")), busybox + " is missing: run guest-image/build-default-image.sh");
    work = Files.createTempDirectory("shared-images-it");
    registry = TestRegistry.start(work, "127.0.0.1", "");
    cluster = LocalCluster.builder().nodes(2)
        .javaOptions(List.of("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx384m", "-Xss512k",
            "-Dflotilla.sandbox.runtime=" + property("flotilla.sandbox.runtime", "../guest-image/out/sandbox-runtime"),
            "-Dflotilla.default.image=" + busybox))
        .config("flotilla.auth.tokens += { tenant = \"" + OTHER + "\", token = \"" + OTHER_TOKEN + "\" }\n"
            + "flotilla.sandbox.restart.min-backoff = 100ms\n")
        .deleteOnClose(true)
        .start();
    clientSystem = clientSystem();
    token = cluster.token();
    for (LocalNode n : cluster.nodes()) {
      var settings = GrpcClientSettings.connectToServiceAt("127.0.0.1", n.grpcPort(), clientSystem).withTls(false);
      sandboxes[n.index()] = SandboxServiceClient.create(settings, clientSystem);
      images[n.index()] = ImageServiceClient.create(settings, clientSystem);
    }
    for (int i = 1; i <= 2; i++) {
      client = sandboxes[i];
      Awaitility.await("node " + i + " answers").atMost(READY).pollInterval(Duration.ofMillis(250))
          .ignoreException(StatusRuntimeException.class)
          .until(() -> await(client.listSandboxes().addHeader("authorization", bearer())
              .invoke(ListSandboxesRequest.getDefaultInstance())) != null);
    }
    client = sandboxes[1];
  }

  @AfterAll
  void stop() {
    try {
      if (cluster != null) cluster.close(); // nodes, their sandboxes' containers, mounts and cgroups, PostgreSQL
    } finally {
      if (clientSystem != null) clientSystem.terminate();
      if (registry != null) registry.close();
      if (work != null) TestTools.run(null, "rm", "-rf", work.toString());
    }
  }

  static String property(String name, String fallback) {
    return Path.of(System.getProperty(name, fallback)).toAbsolutePath().normalize().toString();
  }

  @Test
  void imagesOutliveTheNodeThatBroughtThem() throws Exception {
    try {
      scenario();
    } catch (Throwable t) {
      for (LocalNode n : cluster.nodes()) System.err.println("----- " + n + " log:\n" + n.logTail(150));
      throw t;
    }
  }

  void scenario() throws Exception {
    // The split brain resolver (keep-majority) keeps the half with the lowest address when two
    // nodes lose each other: the node that dies is the other one, A; B survives.
    int a = cluster.node(1).arteryPort() > cluster.node(2).arteryPort() ? 1 : 2;
    int b = 3 - a;
    String nodeA = cluster.node(a).arteryAddress();
    String nodeB = cluster.node(b).arteryAddress();
    client = sandboxes[a];

    // An image pushed as repo:tag, and another imported through node 1's CLI.
    String ref = registry.address() + "/demo/moving:1";
    Digest first = TestUmoci.push(layout("first", "v1", "first bytes"), "v1", registry.address(), "demo/moving:1");
    Path importTar = work.resolve("imported.tar");
    TestTools.run(null, "tar", "-C", layout("imported", "v1", "imported on node 1").toString(), "-cf", importTar.toString(), ".");
    // Named under the loopback registry, which does not have it: a tenant that may not see the
    // import gets the registry's answer, NOT_FOUND.
    String importedName = registry.address() + "/team/imported:1";
    ImagesIT.Cli imported = cli(a, "image", "import", importTar.toString(), "--name", importedName);
    assertEquals(0, imported.code(), imported.err());
    String importedDigest = imported.out().strip().split(" ")[1];

    // The pulled image's sandbox on A: make B the busier one, then create through A.
    for (int i = 0; i < 4 && count(nodeB) <= count(nodeA); i++) {
      awaitPhase(create(spec(), "").getId(), Phase.RUNNING);
    }
    Sandbox created = create(SandboxSpec.newBuilder(spec()).setImage(ref).build(), "");
    assertEquals(ref + "@" + first, created.getSpec().getImage(), "pinned to the manifest digest at create");
    String id = created.getId();
    Sandbox before = awaitPhase(id, Phase.RUNNING);
    assertEquals(nodeA, before.getNode(), "least-loaded placement puts it on A: " + before);
    assertEquals("first bytes\n", exec(id, "cat", "/srv/app/greeting").stdout());
    assertTrue(listAs(b, token).stream().noneMatch(i -> i.getDigest().equals(first.toString())),
        "B never pulled it: " + listAs(b, token));

    // The tag moves to other bytes.
    Digest second = TestUmoci.push(layout("second", "v2", "second bytes"), "v2", registry.address(), "demo/moving:1");
    assertNotEquals(first, second);

    // A's host dies: its JVM and every sandbox process it ran.
    cluster.killHost(a);
    client = sandboxes[b];

    // (a) the sandbox runs again on B, from the digest it was pinned to.
    Awaitility.await("the sandbox runs again on B").atMost(TAKEOVER).pollInterval(Duration.ofMillis(250))
        .ignoreException(StatusRuntimeException.class)
        .untilAsserted(() -> {
          Sandbox s = get(id);
          assertEquals(Phase.RUNNING, s.getPhase(), s.toString());
          assertEquals(nodeB, s.getNode(), s.toString());
          assertTrue(s.getIncarnation() > before.getIncarnation(), s.toString());
        });
    assertEquals(ref + "@" + first, get(id).getSpec().getImage());
    Awaitility.await("exec answers, with the first image's file").atMost(READY).ignoreExceptions()
        .untilAsserted(() -> assertEquals("first bytes\n", exec(id, "cat", "/srv/app/greeting").stdout()));
    assertEquals("hello from first\n", exec(id, "sh", "-c", "echo $GREETING").stdout());
    assertTrue(listAs(b, token).stream().anyMatch(i -> i.getDigest().equals(first.toString())), "pulled by digest on B");
    // ...which did not point B's tag at the old bytes: a new sandbox by the tag gets the moved tag's.
    Sandbox byTag = create(SandboxSpec.newBuilder(spec()).setImage(ref).build(), "");
    assertEquals(ref + "@" + second, byTag.getSpec().getImage());

    // (b) the import of the dead A: listed on B, runs with its files there, its tenant's only.
    List<Image> listed = listAs(b, token);
    assertTrue(listed.stream().anyMatch(i -> i.getDigest().equals(importedDigest) && i.getOwner().equals("yours")
        && i.getNamesList().contains(importedName)), listed.toString());
    assertTrue(listAs(b, OTHER_TOKEN).stream().noneMatch(i -> i.getDigest().equals(importedDigest)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> createAs(OTHER_TOKEN, importedName)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> createAs(OTHER_TOKEN, importedName + "@" + importedDigest)));

    long t0 = System.nanoTime();
    Sandbox fromImport = create(SandboxSpec.newBuilder(spec()).setImage(importedName).build(), "");
    assertEquals(importedName + "@" + importedDigest, fromImport.getSpec().getImage());
    awaitPhase(fromImport.getId(), Phase.RUNNING);
    long firstUse = (System.nanoTime() - t0) / 1_000_000;
    assertEquals("imported on node 1\n", exec(fromImport.getId(), "cat", "/srv/app/greeting").stdout());
    assertEquals("hello from imported\n", exec(fromImport.getId(), "sh", "-c", "echo $GREETING").stdout());
    assertEquals("/srv/app\n", exec(fromImport.getId(), "pwd").stdout());

    long t1 = System.nanoTime();
    Sandbox again = create(SandboxSpec.newBuilder(spec()).setImage(importedName).build(), "");
    awaitPhase(again.getId(), Phase.RUNNING);
    long localUse = (System.nanoTime() - t1) / 1_000_000;
    System.out.println("FIGURE create-to-RUNNING on B of an image imported on A: first use (fetched from PostgreSQL) "
        + firstUse + " ms, second use (local) " + localUse + " ms, archive " + Files.size(importTar) + " bytes");

    // What B did, from its log: a pull by digest, a fetch from the shared store.
    String log = Files.readString(cluster.node(b).logFile());
    assertTrue(log.contains("pulled " + ref + "@" + first + " as " + first.shortHex()), "B pulled the pinned digest");
    assertTrue(log.contains("fetched " + importedDigest.substring(7, 19) + " from the shared store for 'default'"), "B fetched the import");
    log.lines().filter(l -> l.contains("fetched ") || l.contains("pulled ")).forEach(l -> System.out.println("node B: " + l));

    // The tenant removes it on B: gone from the shared store too.
    ImagesIT.Cli removed = cli(b, "image", "rm", importedName);
    assertEquals(0, removed.code(), removed.err());
    assertTrue(listAs(b, token).stream().noneMatch(i -> i.getNamesList().contains(importedName)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> createAs(token, importedName)));
  }

  // ------------------------------------------------------------------------------ helpers

  /** One image on busybox: /srv/app/greeting, GREETING=hello from {@code name}, WorkingDir /srv/app. */
  Path layout(String name, String tag, String greeting) throws java.io.IOException {
    Path layout = work.resolve("layout-" + name);
    TestUmoci.build(work, layout, tag, busybox, Map.of("srv/app/greeting", greeting + "\n"),
        List.of("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello from " + name), "/srv/app", "root");
    return layout;
  }

  long count(String node) {
    return await(client.listSandboxes().addHeader("authorization", bearer()).invoke(ListSandboxesRequest.newBuilder().setPageSize(1000).build()))
        .getSandboxesList().stream().filter(s -> s.getNode().equals(node)).count();
  }

  List<Image> listAs(int node, String tok) {
    return await(images[node].listImages().addHeader("authorization", "Bearer " + tok).invoke(ListImagesRequest.getDefaultInstance()))
        .getImagesList();
  }

  Sandbox createAs(String tok, String image) {
    return await(client.createSandbox().addHeader("authorization", "Bearer " + tok)
        .invoke(CreateSandboxRequest.newBuilder().setSpec(SandboxSpec.newBuilder(spec()).setImage(image)).build()));
  }

  /** The real CLI in this JVM against node {@code i}, as the default tenant. */
  ImagesIT.Cli cli(int i, String... args) {
    var out = new ByteArrayOutputStream();
    var err = new ByteArrayOutputStream();
    int code = new dev.flotilla.cli.Cli(new dev.flotilla.cli.CliContext(
        Map.of("FLOTILLA_ENDPOINT", cluster.node(i).grpcAddress(), "FLOTILLA_TOKEN", token), work,
        new java.io.PrintStream(out, true, StandardCharsets.UTF_8), new java.io.PrintStream(err, true, StandardCharsets.UTF_8),
        new java.io.ByteArrayInputStream(new byte[0]))).run(args);
    return new ImagesIT.Cli(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }
}
