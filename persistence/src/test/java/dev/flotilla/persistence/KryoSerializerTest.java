package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.persistence.kryo.KryoCodec;
import dev.flotilla.persistence.testdomain.Shapes.Circle;
import dev.flotilla.persistence.testdomain.Shapes.Color;
import dev.flotilla.persistence.testdomain.Shapes.Drawing;
import dev.flotilla.persistence.testdomain.Shapes.Envelope;
import dev.flotilla.persistence.testdomain.Shapes.PlainHolder;
import dev.flotilla.persistence.testdomain.Shapes.Square;
import dev.flotilla.persistence.testdomain.Shapes.Unregistered;
import dev.flotilla.persistence.testdomain.Shapes.Upload;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.StreamRefs;
import com.typesafe.config.ConfigFactory;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.apache.pekko.Done;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.serialization.Serializer;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

class KryoSerializerTest {
  private static ActorTestKit testKit;
  private static Serialization serialization;
  private static Serializer kryo;

  @BeforeAll
  static void start() throws Exception {
    testKit = ActorTestKit.create("kryo-test");
    serialization = SerializationExtension.get(Adapter.toClassic(testKit.system()));
    kryo = serialization.serializerFor(Drawing.class);
  }

  @AfterAll
  static void stop() {
    testKit.shutdownTestKit();
  }

  private static Object fromBytes(byte[] bytes) {
    return kryo.fromBinary(bytes);
  }

  private static Object roundTrip(Object value) {
    return fromBytes(kryo.toBinary(value));
  }

  @Test
  void markerInterfaceIsBoundToKryoWithFixedIdentifier() {
    assertInstanceOf(KryoSerializer.class, kryo);
    assertEquals(7070, kryo.identifier());
    assertEquals(KryoSerializer.IDENTIFIER, serialization.findSerializerFor(new Circle(1, Color.RED)).identifier());
  }

  static Stream<Object> builtins() {
    Map<String, Integer> linked = new LinkedHashMap<>();
    linked.put("z", 1);
    linked.put("a", 2);
    Set<String> linkedSet = new LinkedHashSet<>(List.of("z", "a", "m"));
    return Stream.of(
        "text",
        42,
        42L,
        true,
        3.5d,
        List.of(),
        List.of("a"),
        List.of("a", "b", "c"),
        List.copyOf(new ArrayList<>(List.of("x", "y"))),
        Map.of(),
        Map.of("k", "v"),
        Map.of("a", 1, "b", 2, "c", 3),
        Map.copyOf(new HashMap<>(Map.of("a", "b"))),
        Set.of(),
        Set.of("x"),
        Set.of("x", "y", "z"),
        Set.copyOf(List.of("p", "q")),
        Collections.emptyList(),
        Collections.emptyMap(),
        Collections.emptySet(),
        new ArrayList<>(List.of(1, 2, 3)),
        new HashMap<>(Map.of("a", List.of(1, 2))),
        new TreeMap<>(Map.of("b", 1, "a", 2)),
        linked,
        new HashSet<>(Set.of("h")),
        new TreeSet<>(Set.of("b", "a")),
        linkedSet,
        Optional.empty(),
        Optional.of("present"),
        Instant.parse("2026-11-25T03:47:04.123456789Z"),
        Duration.ofMillis(-1234),
        UUID.fromString("1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
        new BigInteger("123456789012345678901234567890"),
        new BigDecimal("-1.25"),
        ByteString.fromString("bytes"),
        ByteString.fromString("con").concat(ByteString.fromString("cat")),
        Done.getInstance(),
        NotUsed.getInstance(),
        Color.RED,
        Color.GREEN);
  }

  @ParameterizedTest
  @MethodSource("builtins")
  void builtinRoundTrips(Object value) {
    Object back = roundTrip(value);
    assertEquals(value, back);
    if (value instanceof List<?> || value instanceof Map<?, ?> || value instanceof Set<?>) {
      boolean immutableSource = isImmutable(value);
      assertEquals(immutableSource, isImmutable(back), "mutability preserved for " + value.getClass());
      if (!immutableSource) {
        assertSame(value.getClass(), back.getClass());
      }
    }
    if (value instanceof LinkedHashMap<?, ?> m) {
      assertEquals(List.copyOf(m.keySet()), List.copyOf(((Map<?, ?>) back).keySet()), "order kept");
    }
    if (value instanceof LinkedHashSet<?> s) {
      assertEquals(List.copyOf(s), List.copyOf((Set<?>) back), "order kept");
    }
  }

  @SuppressWarnings({"unchecked", "rawtypes"})
  private static boolean isImmutable(Object collection) {
    try {
      if (collection instanceof Map m) {
        m.put("mutation-probe", "x");
      } else {
        ((Collection) collection).add("mutation-probe");
      }
      return false;
    } catch (UnsupportedOperationException e) {
      return true;
    }
  }

  @Test
  void byteArrayRoundTrips() {
    byte[] bytes = {1, 2, 3, -1, 0};
    assertArrayEquals(bytes, (byte[]) roundTrip(bytes));
  }

  @Test
  void streamToListWithNullsStaysImmutable() {
    List<String> withNull = Stream.of("a", null, "b").toList();
    Object back = roundTrip(withNull);
    assertEquals(withNull, back);
    assertTrue(isImmutable(back));
  }

  @Test
  void sealedHierarchyOfRecordsRoundTripsThroughPekkoSerialization() {
    Drawing drawing =
        new Drawing(
            "d1",
            List.of(new Circle(1.5, Color.RED), new Square(3, Color.GREEN, Optional.of("sq")), new Square(4, Color.BLUE, Optional.empty())),
            Map.of("owner", "tenant-a"),
            Instant.parse("2026-01-01T00:00:00Z"),
            7L);
    byte[] bytes = serialization.serialize(drawing).get();
    Object back = serialization.deserialize(bytes, KryoSerializer.IDENTIFIER, "").get();
    assertEquals(drawing, back);
  }

  @Test
  void recordsWithNullComponentsRoundTrip() {
    Drawing drawing = new Drawing(null, List.of(), null, null, 0);
    assertEquals(drawing, roundTrip(drawing));
  }

  @Test
  void plainClassRoundTrips() {
    assertEquals(new PlainHolder("p", 3), roundTrip(new PlainHolder("p", 3)));
  }

  @Test
  void unregisteredClassIsRejectedWithClassNameAndConfigKey() {
    var failure = serialization.serialize(new Unregistered("x"));
    assertTrue(failure.isFailure());
    String message = failure.failed().get().getMessage();
    assertTrue(message.contains(Unregistered.class.getName()), message);
    assertTrue(message.contains("flotilla.serialization.kryo.classes"), message);
  }

  @Test
  @SuppressWarnings({"unchecked", "rawtypes"})
  void unregisteredClassNestedInARegisteredRecordIsRejected() {
    Map<String, String> sneaky = (Map) Map.of("k", new java.util.Date(0));
    Drawing drawing = new Drawing("d", List.of(), sneaky, null, 0);
    var ex = assertThrows(IllegalArgumentException.class, () -> kryo.toBinary(drawing));
    assertTrue(ex.getMessage().contains("java.util.Date"), ex.getMessage());
    assertTrue(ex.getMessage().contains("flotilla.serialization.kryo.classes"), ex.getMessage());
  }

  @Test
  void unknownClassIdInBytesIsRejectedClearly() {
    byte[] bytes = kryo.toBinary(new Circle(2, Color.BLUE));
    KryoCodec bare = new KryoCodec(ConfigFactory.empty(), getClass().getClassLoader(), null);
    var ex = assertThrows(RuntimeException.class, () -> bare.fromBinary(bytes));
    assertTrue(ex.getMessage().contains("9001"), ex.getMessage());
    assertTrue(ex.getMessage().contains("flotilla.serialization.kryo.classes"), ex.getMessage());
  }

  @Test
  void javaSerializationIsOff() {
    var result = serialization.serialize(new java.util.Date());
    assertTrue(result.isFailure(), "java.io.Serializable must not fall back to Java serialization");
  }

  @Test
  void typedActorRefRoundTripsAndStillDelivers() {
    TestProbe<String> probe = testKit.createTestProbe();
    Envelope back = (Envelope) roundTrip(new Envelope("hello", probe.ref()));
    assertEquals(probe.ref(), back.replyTo());
    back.replyTo().tell("via deserialized ref");
    probe.expectMessage("via deserialized ref");
  }

  @Test
  void nestedStreamRefAndStatusReplyGoThroughPekkosOwnSerializers() throws Exception {
    SourceRef<String> ref =
        Source.from(List.of("a", "b", "c")).runWith(StreamRefs.sourceRef(), testKit.system());
    Upload back = (Upload) roundTrip(new Upload("u", ref, StatusReply.error("nope")));
    assertEquals("u", back.name());
    assertEquals("nope", back.status().getError().getMessage());
    List<String> received =
        back.data().getSource().runWith(Sink.seq(), testKit.system()).toCompletableFuture().get(10, TimeUnit.SECONDS);
    assertEquals(List.of("a", "b", "c"), received);
    Upload ok = (Upload) roundTrip(new Upload("v", null, StatusReply.success("fine")));
    assertEquals("fine", ok.status().getValue());
  }

  @Test
  void pooledInstancesAreSafeUnderConcurrency() throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(8);
    try {
      List<Callable<Boolean>> tasks = new ArrayList<>();
      for (int t = 0; t < 8; t++) {
        int seed = t;
        tasks.add(
            () ->
                IntStream.range(0, 500)
                    .allMatch(
                        i -> {
                          Drawing d = new Drawing("d" + seed + "-" + i, List.of(new Circle(i, Color.RED)), Map.of("i", "" + i), null, i);
                          return d.equals(roundTrip(d));
                        }));
      }
      for (Future<Boolean> f : pool.invokeAll(tasks)) {
        assertTrue(f.get());
      }
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void rejectsForeignBytes() {
    var ex = assertThrows(IllegalArgumentException.class, () -> fromBytes(new byte[] {42, 1, 2}));
    assertTrue(ex.getMessage().contains("format byte"), ex.getMessage());
  }
}
