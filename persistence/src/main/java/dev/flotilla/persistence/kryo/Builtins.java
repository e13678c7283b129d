package dev.flotilla.persistence.kryo;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.KryoException;
import com.esotericsoftware.kryo.Serializer;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.io.Output;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
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
import java.util.function.Supplier;
import org.apache.pekko.Done;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.serialization.Serializers;
import org.apache.pekko.stream.SinkRef;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.util.ByteString;

/**
 * The classes this module registers itself, with ids in 10–999. Ids 0–9 are Kryo's own
 * (primitives, their wrappers and String). These ids are forever: append, never renumber.
 */
final class Builtins {
  private Builtins() {}

  static final int BYTE_ARRAY = 10;
  static final int ARRAY_LIST = 11;
  static final int HASH_MAP = 12;
  static final int TREE_MAP = 13;
  static final int LINKED_HASH_MAP = 14;
  static final int HASH_SET = 15;
  static final int TREE_SET = 16;
  static final int LINKED_HASH_SET = 17;
  static final int IMMUTABLE_LIST_12 = 20;
  static final int IMMUTABLE_LIST_N = 21;
  static final int IMMUTABLE_SET_12 = 22;
  static final int IMMUTABLE_SET_N = 23;
  static final int IMMUTABLE_MAP_1 = 24;
  static final int IMMUTABLE_MAP_N = 25;
  static final int EMPTY_LIST = 26;
  static final int EMPTY_SET = 27;
  static final int EMPTY_MAP = 28;
  static final int OPTIONAL = 30;
  static final int INSTANT = 31;
  static final int DURATION = 32;
  static final int UUID_ID = 33;
  static final int BIG_INTEGER = 34;
  static final int BIG_DECIMAL = 35;
  static final int TYPED_ACTOR_REF = 40;
  static final int CLASSIC_ACTOR_REF = 41;
  static final int SOURCE_REF = 42;
  static final int SINK_REF = 43;
  static final int STATUS_REPLY = 44;
  static final int BYTE_STRING = 50;
  static final int DONE = 51;
  static final int NOT_USED = 52;

  static final int MAX_BUILTIN_ID = 999;

  /** Maps implementation classes onto the registered public type whose serializer handles them. */
  static Class<?> aliasFor(Class<?> type) {
    if (ActorRef.class.isAssignableFrom(type)) {
      return ActorRef.class;
    }
    if (org.apache.pekko.actor.ActorRef.class.isAssignableFrom(type)) {
      return org.apache.pekko.actor.ActorRef.class;
    }
    if (ByteString.class.isAssignableFrom(type)) {
      return ByteString.class;
    }
    if (SourceRef.class.isAssignableFrom(type)) {
      return SourceRef.class;
    }
    if (SinkRef.class.isAssignableFrom(type)) {
      return SinkRef.class;
    }
    Class<?> superclass = type.getSuperclass();
    if (superclass != null && superclass.isEnum()) {
      return superclass; // constant-specific class body
    }
    return null;
  }

  static void register(Kryo kryo, Supplier<ExtendedActorSystem> system) {
    kryo.register(byte[].class, BYTE_ARRAY);
    kryo.register(ArrayList.class, ARRAY_LIST);
    kryo.register(HashMap.class, HASH_MAP);
    kryo.register(TreeMap.class, TREE_MAP);
    kryo.register(LinkedHashMap.class, LINKED_HASH_MAP);
    kryo.register(HashSet.class, HASH_SET);
    kryo.register(TreeSet.class, TREE_SET);
    kryo.register(LinkedHashSet.class, LINKED_HASH_SET);

    ImmutableListSerializer list = new ImmutableListSerializer();
    ImmutableSetSerializer set = new ImmutableSetSerializer();
    ImmutableMapSerializer map = new ImmutableMapSerializer();
    kryo.register(List.of(1).getClass(), list, IMMUTABLE_LIST_12);
    kryo.register(List.of(1, 2, 3).getClass(), list, IMMUTABLE_LIST_N);
    kryo.register(Set.of(1).getClass(), set, IMMUTABLE_SET_12);
    kryo.register(Set.of(1, 2, 3).getClass(), set, IMMUTABLE_SET_N);
    kryo.register(Map.of(1, 1).getClass(), map, IMMUTABLE_MAP_1);
    kryo.register(Map.of(1, 1, 2, 2).getClass(), map, IMMUTABLE_MAP_N);
    kryo.register(Collections.emptyList().getClass(), list, EMPTY_LIST);
    kryo.register(Collections.emptySet().getClass(), set, EMPTY_SET);
    kryo.register(Collections.emptyMap().getClass(), map, EMPTY_MAP);

    kryo.register(Optional.class, new OptionalSerializer(), OPTIONAL);
    kryo.register(Instant.class, new InstantSerializer(), INSTANT);
    kryo.register(Duration.class, new DurationSerializer(), DURATION);
    kryo.register(UUID.class, new UuidSerializer(), UUID_ID);
    kryo.register(BigInteger.class, BIG_INTEGER);
    kryo.register(BigDecimal.class, BIG_DECIMAL);

    kryo.register(ActorRef.class, new TypedActorRefSerializer(system), TYPED_ACTOR_REF);
    kryo.register(
        org.apache.pekko.actor.ActorRef.class, new ClassicActorRefSerializer(system), CLASSIC_ACTOR_REF);
    // Pekko types with their own serializers, nested in our records: delegate to Pekko.
    kryo.register(SourceRef.class, new PekkoDelegateSerializer(system), SOURCE_REF);
    kryo.register(SinkRef.class, new PekkoDelegateSerializer(system), SINK_REF);
    kryo.register(StatusReply.class, new PekkoDelegateSerializer(system), STATUS_REPLY);
    kryo.register(ByteString.class, new ByteStringSerializer(), BYTE_STRING);
    kryo.register(Done.getInstance().getClass(), new SingletonSerializer<>(Done.getInstance()), DONE);
    kryo.register(NotUsed.getInstance().getClass(), new SingletonSerializer<>(NotUsed.getInstance()), NOT_USED);
  }

  static ExtendedActorSystem requireSystem(Supplier<ExtendedActorSystem> system, String what) {
    ExtendedActorSystem s = system == null ? null : system.get();
    if (s == null) {
      throw new KryoException(
          "Cannot (de)serialize " + what + " without an ActorSystem: use the KryoSerializer the"
              + " ActorSystem created, or a KryoCodec built with one");
    }
    return s;
  }

  static final class ImmutableListSerializer extends Serializer<List<?>> {
    ImmutableListSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, List<?> list) {
      output.writeVarInt(list.size(), true);
      for (Object e : list) {
        kryo.writeClassAndObject(output, e);
      }
    }

    @Override
    public List<?> read(Kryo kryo, Input input, Class<? extends List<?>> type) {
      Object[] items = readItems(kryo, input);
      // Stream.toList() is immutable but allows nulls; List.of does not.
      return containsNull(items)
          ? Collections.unmodifiableList(Arrays.asList(items))
          : List.of(items);
    }
  }

  static final class ImmutableSetSerializer extends Serializer<Set<?>> {
    ImmutableSetSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, Set<?> set) {
      output.writeVarInt(set.size(), true);
      for (Object e : set) {
        kryo.writeClassAndObject(output, e);
      }
    }

    @Override
    public Set<?> read(Kryo kryo, Input input, Class<? extends Set<?>> type) {
      return Set.of(readItems(kryo, input));
    }
  }

  static final class ImmutableMapSerializer extends Serializer<Map<?, ?>> {
    ImmutableMapSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, Map<?, ?> map) {
      output.writeVarInt(map.size(), true);
      for (Map.Entry<?, ?> e : map.entrySet()) {
        kryo.writeClassAndObject(output, e.getKey());
        kryo.writeClassAndObject(output, e.getValue());
      }
    }

    @Override
    @SuppressWarnings({"unchecked", "rawtypes"})
    public Map<?, ?> read(Kryo kryo, Input input, Class<? extends Map<?, ?>> type) {
      int size = input.readVarInt(true);
      Map.Entry[] entries = new Map.Entry[size];
      for (int i = 0; i < size; i++) {
        Object k = kryo.readClassAndObject(input);
        Object v = kryo.readClassAndObject(input);
        entries[i] = Map.entry(k, v);
      }
      return Map.ofEntries(entries);
    }
  }

  private static Object[] readItems(Kryo kryo, Input input) {
    int size = input.readVarInt(true);
    Object[] items = new Object[size];
    for (int i = 0; i < size; i++) {
      items[i] = kryo.readClassAndObject(input);
    }
    return items;
  }

  private static boolean containsNull(Object[] items) {
    for (Object o : items) {
      if (o == null) {
        return true;
      }
    }
    return false;
  }

  static final class OptionalSerializer extends Serializer<Optional<?>> {
    OptionalSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, Optional<?> value) {
      kryo.writeClassAndObject(output, value.orElse(null));
    }

    @Override
    public Optional<?> read(Kryo kryo, Input input, Class<? extends Optional<?>> type) {
      return Optional.ofNullable(kryo.readClassAndObject(input));
    }
  }

  static final class InstantSerializer extends Serializer<Instant> {
    InstantSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, Instant value) {
      output.writeVarLong(value.getEpochSecond(), false);
      output.writeVarInt(value.getNano(), true);
    }

    @Override
    public Instant read(Kryo kryo, Input input, Class<? extends Instant> type) {
      return Instant.ofEpochSecond(input.readVarLong(false), input.readVarInt(true));
    }
  }

  static final class DurationSerializer extends Serializer<Duration> {
    DurationSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, Duration value) {
      output.writeVarLong(value.getSeconds(), false);
      output.writeVarInt(value.getNano(), true);
    }

    @Override
    public Duration read(Kryo kryo, Input input, Class<? extends Duration> type) {
      return Duration.ofSeconds(input.readVarLong(false), input.readVarInt(true));
    }
  }

  static final class UuidSerializer extends Serializer<UUID> {
    UuidSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, UUID value) {
      output.writeLong(value.getMostSignificantBits());
      output.writeLong(value.getLeastSignificantBits());
    }

    @Override
    public UUID read(Kryo kryo, Input input, Class<? extends UUID> type) {
      return new UUID(input.readLong(), input.readLong());
    }
  }

  static final class ByteStringSerializer extends Serializer<ByteString> {
    ByteStringSerializer() {
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, ByteString value) {
      output.writeVarInt(value.length(), true);
      output.writeBytes(value.toArrayUnsafe());
    }

    @Override
    public ByteString read(Kryo kryo, Input input, Class<? extends ByteString> type) {
      return ByteString.fromArrayUnsafe(input.readBytes(input.readVarInt(true)));
    }
  }

  static final class SingletonSerializer<T> extends Serializer<T> {
    private final T instance;

    SingletonSerializer(T instance) {
      this.instance = instance;
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, T value) {}

    @Override
    public T read(Kryo kryo, Input input, Class<? extends T> type) {
      return instance;
    }
  }

  /** Typed refs travel as their serialization format string, resolved on the receiving side. */
  static final class TypedActorRefSerializer extends Serializer<ActorRef<?>> {
    private final Supplier<ExtendedActorSystem> system;

    TypedActorRefSerializer(Supplier<ExtendedActorSystem> system) {
      this.system = system;
      setImmutable(true);
    }

    private ActorRefResolver resolver() {
      return ActorRefResolver.get(Adapter.toTyped(requireSystem(system, "a typed ActorRef")));
    }

    @Override
    public void write(Kryo kryo, Output output, ActorRef<?> ref) {
      output.writeString(resolver().toSerializationFormat(ref));
    }

    @Override
    public ActorRef<?> read(Kryo kryo, Input input, Class<? extends ActorRef<?>> type) {
      return resolver().resolveActorRef(input.readString());
    }
  }

  static final class ClassicActorRefSerializer extends Serializer<org.apache.pekko.actor.ActorRef> {
    private final Supplier<ExtendedActorSystem> system;

    ClassicActorRefSerializer(Supplier<ExtendedActorSystem> system) {
      this.system = system;
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, org.apache.pekko.actor.ActorRef ref) {
      requireSystem(system, "an ActorRef");
      output.writeString(Serialization.serializedActorPath(ref));
    }

    @Override
    public org.apache.pekko.actor.ActorRef read(
        Kryo kryo, Input input, Class<? extends org.apache.pekko.actor.ActorRef> type) {
      return requireSystem(system, "an ActorRef").provider().resolveActorRef(input.readString());
    }
  }

  /**
   * Stream refs and StatusReply nested in our records: written with the serializer Pekko binds to
   * them (serializer id, manifest, bytes), so they resolve on the receiving node as Pekko intends.
   */
  static final class PekkoDelegateSerializer extends Serializer<Object> {
    private final Supplier<ExtendedActorSystem> system;

    PekkoDelegateSerializer(Supplier<ExtendedActorSystem> system) {
      this.system = system;
      setImmutable(true);
    }

    @Override
    public void write(Kryo kryo, Output output, Object value) {
      Serialization serialization = SerializationExtension.get(requireSystem(system, value.getClass().getName()));
      org.apache.pekko.serialization.Serializer serializer = serialization.findSerializerFor(value);
      byte[] bytes = serializer.toBinary(value);
      output.writeVarInt(serializer.identifier(), true);
      output.writeString(Serializers.manifestFor(serializer, value));
      output.writeVarInt(bytes.length, true);
      output.writeBytes(bytes);
    }

    @Override
    public Object read(Kryo kryo, Input input, Class<?> type) {
      int serializerId = input.readVarInt(true);
      String manifest = input.readString();
      byte[] bytes = input.readBytes(input.readVarInt(true));
      Serialization serialization = SerializationExtension.get(requireSystem(system, type.getName()));
      return serialization.deserialize(bytes, serializerId, manifest).get();
    }
  }
}
