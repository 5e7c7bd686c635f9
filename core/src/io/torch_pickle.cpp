#include "rptq/io/torch_pickle.h"

#include <bit>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "rptq/base/error.h"
#include "rptq/io/mapped_file.h"
#include "rptq/io/safetensors.h"
#include "rptq/base/tensor.h"
#include "rptq/io/zip_archive.h"

namespace rptq {

namespace {

// Untrusted text (global names, keys) made safe and short for an error message.
std::string printable(std::string_view s, std::size_t max = 120) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max) out += "...";
  return out;
}

const char* opcode_name(std::uint8_t op) {
  switch (op) {
    case '(': return "MARK";          case '.': return "STOP";          case '0': return "POP";
    case '1': return "POP_MARK";      case '2': return "DUP";           case 'F': return "FLOAT";
    case 'I': return "INT";           case 'J': return "BININT";        case 'K': return "BININT1";
    case 'L': return "LONG";          case 'M': return "BININT2";       case 'N': return "NONE";
    case 'P': return "PERSID";        case 'Q': return "BINPERSID";     case 'R': return "REDUCE";
    case 'S': return "STRING";        case 'T': return "BINSTRING";     case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";       case 'X': return "BINUNICODE";    case 'a': return "APPEND";
    case 'b': return "BUILD";         case 'c': return "GLOBAL";        case 'd': return "DICT";
    case '}': return "EMPTY_DICT";    case 'e': return "APPENDS";       case 'g': return "GET";
    case 'h': return "BINGET";        case 'i': return "INST";          case 'j': return "LONG_BINGET";
    case 'l': return "LIST";          case ']': return "EMPTY_LIST";    case 'o': return "OBJ";
    case 'p': return "PUT";           case 'q': return "BINPUT";        case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";       case 't': return "TUPLE";         case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";      case 'G': return "BINFLOAT";      case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";       case 0x82: return "EXT1";         case 0x83: return "EXT2";
    case 0x84: return "EXT4";         case 0x85: return "TUPLE1";       case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";       case 0x88: return "NEWTRUE";      case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";        case 0x8b: return "LONG4";        case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES"; case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";    case 0x8f: return "EMPTY_SET";    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";    case 0x92: return "NEWOBJ_EX";    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";      case 0x95: return "FRAME";        case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";  case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

std::optional<DType> storage_dtype(std::string_view name) {
  static constexpr std::pair<std::string_view, DType> kTable[] = {
      {"FloatStorage", DType::F32}, {"HalfStorage", DType::F16},   {"BFloat16Storage", DType::BF16},
      {"DoubleStorage", DType::F64}, {"LongStorage", DType::I64},  {"IntStorage", DType::I32},
      {"ShortStorage", DType::I16}, {"CharStorage", DType::I8},    {"ByteStorage", DType::U8},
      {"BoolStorage", DType::Bool}};
  for (const auto& [n, t] : kTable)
    if (n == name) return t;
  return std::nullopt;
}

// Everything the unpickler can hold. Values live in flat pools and refer to each other by index, so hostile
// nesting or reference cycles cost no recursion and free in one go.
enum class Kind : std::uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor };
// The only callables that exist: what the allow-listed globals resolve to.
enum class Fn : std::uint8_t {
  OrderedDict,                // collections.OrderedDict
  RebuildTensorV2,            // torch._utils._rebuild_tensor_v2
  RebuildTensor,              // torch._utils._rebuild_tensor
  RebuildParameter,           // torch._utils._rebuild_parameter
  RebuildParameterWithState,  // torch._utils._rebuild_parameter_with_state
  RebuildFromTypeV2,          // torch._tensor._rebuild_from_type_v2 (tensor subclass wrapper)
  TensorType,                 // torch.Tensor, torch.nn.parameter.Parameter: only as _rebuild_from_type_v2's type
  StorageType,                // torch.FloatStorage, ...: only inside persistent ids
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";      case Kind::Bool: return "bool";      case Kind::Int: return "int";
    case Kind::Float: return "float";    case Kind::Str: return "str";        case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";    case Kind::List: return "list";      case Kind::Dict: return "dict";
    case Kind::Global: return "global";  case Kind::Storage: return "storage"; case Kind::Tensor: return "tensor";
  }
  return "?";
}

struct Obj {
  Kind kind = Kind::None;
  Fn fn = Fn::OrderedDict;   // Global
  DType dtype = DType::F32;  // Global StorageType
  std::uint32_t ref = 0;     // index into strings_ (Str, Bytes), lists_ (Tuple, List, Dict), storages_, tensors_
  std::int64_t i = 0;        // Int, Bool
  double f = 0;              // Float
};

class Unpickler {
 public:
  Unpickler(std::span<const std::byte> pickle, const StorageLookup& lookup, std::shared_ptr<const void> owner,
            const std::string& file, const UnpickleLimits& limits)
      : p_(pickle), lookup_(lookup), owner_(std::move(owner)), file_(file), lim_(limits) {
    if (p_.size() > lim_.max_pickle_bytes)
      fail("pickle is " + std::to_string(p_.size()) + " bytes, over the limit of " +
           std::to_string(lim_.max_pickle_bytes) + " bytes for a state dict");
    none_ = make({Kind::None});
    true_ = make({.kind = Kind::Bool, .i = 1});
    false_ = make({.kind = Kind::Bool, .i = 0});
  }

  std::vector<RawTensor> run() { return state_dict(execute()); }

 private:
  struct Storage {
    DType dtype;
    const std::byte* data;
    std::uint64_t numel;
    std::string key;
  };
  struct TensorRec {
    RawTensor t;
    std::string problem;  // reported with the tensor's name once known
  };

  [[noreturn]] void fail(const std::string& msg) const { throw InputError(file_ + ": " + msg); }
  [[noreturn]] void fail_op(const std::string& msg) const {
    throw InputError(file_ + ": pickle opcode " + op_label() + " at byte " + std::to_string(op_pos_) + ": " + msg);
  }
  std::string op_label() const {
    const std::uint8_t op = std::to_integer<std::uint8_t>(p_[op_pos_]);
    const char* n = opcode_name(op);
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", op);
    return n ? std::string(n) + " (" + hex + ")" : std::string(hex);
  }

  // ---- input ----
  const std::byte* take(std::uint64_t n) {
    if (n > p_.size() - pos_) fail_op("pickle is truncated (needs " + std::to_string(n) + " more bytes)");
    const std::byte* r = p_.data() + pos_;
    pos_ += n;
    return r;
  }
  std::uint8_t u8() { return std::to_integer<std::uint8_t>(*take(1)); }
  std::uint16_t u16() { return load_le16(take(2)); }
  std::uint32_t u32() { return load_le32(take(4)); }
  std::uint64_t u64() { return load_le64(take(8)); }
  std::string_view text(std::uint64_t n) { return {reinterpret_cast<const char*>(take(n)), n}; }
  std::string_view line() {  // GLOBAL / INST operands: a newline-terminated name
    const std::size_t max = std::min<std::size_t>(p_.size() - pos_, 512);
    const void* nl = std::memchr(p_.data() + pos_, '\n', max);
    if (nl == nullptr) fail_op("name is truncated or absurdly long");
    const std::size_t n = static_cast<const std::byte*>(nl) - (p_.data() + pos_);
    std::string_view s = text(n);
    take(1);
    return s;
  }

  // ---- pools and stack ----
  std::uint32_t make(Obj o) {
    if (objs_.size() >= lim_.max_objects)
      fail_op("pickle creates more than " + std::to_string(lim_.max_objects) + " objects, far beyond a state dict");
    objs_.push_back(o);
    return static_cast<std::uint32_t>(objs_.size() - 1);
  }
  std::uint32_t make_string(Kind k, std::string_view s) {
    strings_.emplace_back(s);
    return make({.kind = k, .ref = static_cast<std::uint32_t>(strings_.size() - 1)});
  }
  void count_items(std::size_t n) {
    items_ += n;
    if (items_ > lim_.max_items) fail_op("pickle containers hold more than " + std::to_string(lim_.max_items) + " items");
  }
  std::uint32_t make_list(Kind k, std::vector<std::uint32_t> items) {
    count_items(items.size());
    lists_.push_back(std::move(items));
    return make({.kind = k, .ref = static_cast<std::uint32_t>(lists_.size() - 1)});
  }
  std::uint32_t make_int(std::int64_t v) { return make({.kind = Kind::Int, .i = v}); }

  std::size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(std::uint32_t v) {
    if (stack_.size() >= lim_.max_items) fail_op("pickle stack grows beyond " + std::to_string(lim_.max_items));
    stack_.push_back(v);
  }
  std::uint32_t top() const {
    if (stack_.size() <= base()) fail_op("pickle stack underflow (corrupt pickle)");
    return stack_.back();
  }
  std::uint32_t pop() {
    const std::uint32_t v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<std::uint32_t> pop_mark() {
    if (marks_.empty()) fail_op("no MARK on the stack (corrupt pickle)");
    const std::size_t b = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(b), stack_.end());
    stack_.resize(b);
    return items;
  }
  const Obj& obj(std::uint32_t i) const { return objs_[i]; }
  std::uint32_t expect(std::uint32_t i, Kind k, const char* what) const {
    if (obj(i).kind != k)
      fail_op(std::string(what) + " is a " + kind_name(obj(i).kind) + ", expected a " + kind_name(k));
    return obj(i).ref;
  }
  const std::string& str(std::uint32_t i, const char* what) const { return strings_[expect(i, Kind::Str, what)]; }
  std::int64_t integer(std::uint32_t i, const char* what) const {
    if (obj(i).kind != Kind::Int && obj(i).kind != Kind::Bool)
      fail_op(std::string(what) + " is a " + kind_name(obj(i).kind) + ", expected an int");
    return obj(i).i;
  }

  // ---- the allow list ----
  std::uint32_t global(std::string_view module, std::string_view name) {
    Obj g{.kind = Kind::Global};
    if (module == "collections" && name == "OrderedDict") {
      g.fn = Fn::OrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      g.fn = Fn::RebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_tensor") {
      g.fn = Fn::RebuildTensor;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      g.fn = Fn::RebuildParameter;
    } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
      g.fn = Fn::RebuildParameterWithState;
    } else if (module == "torch._tensor" && name == "_rebuild_from_type_v2") {
      g.fn = Fn::RebuildFromTypeV2;
    } else if ((module == "torch" && name == "Tensor") || (module == "torch.nn.parameter" && name == "Parameter")) {
      g.fn = Fn::TensorType;
    } else if (auto dt = module == "torch" ? storage_dtype(name) : std::nullopt) {
      g.fn = Fn::StorageType;
      g.dtype = *dt;
    } else if (module == "torch" && name.ends_with("Storage")) {
      fail("pickle uses storage type 'torch." + printable(name) +
           "', which is not supported (supported: Float, Half, BFloat16, Double, Long, Int, Short, Char, Byte and "
           "Bool storages)");
    } else {
      fail("pickle refers to global '" + printable(module) + "." + printable(name) +
           "', which a state dict never needs; refusing to load (the file may be malicious; only tensors, "
           "OrderedDicts and storages are allowed)");
    }
    return make(g);
  }

  // ---- torch rebuild functions ----
  std::uint32_t persistent_load(std::uint32_t pid) {
    const Obj o = obj(pid);
    if (o.kind != Kind::Tuple || lists_[o.ref].size() != 5)
      fail_op("persistent id is not a ('storage', type, key, location, numel) tuple");
    const std::vector<std::uint32_t> t = lists_[o.ref];
    if (str(t[0], "persistent id tag") != "storage") fail_op("persistent id tag is not 'storage'");
    if (obj(t[1]).kind != Kind::Global || obj(t[1]).fn != Fn::StorageType)
      fail_op("persistent id names no storage type");
    const DType dt = obj(t[1]).dtype;
    const std::string key = str(t[2], "storage key");
    const std::int64_t numel = integer(t[4], "storage size");
    const auto need = checked_byte_size({numel}, dtype_size(dt));
    const std::span<const std::byte> blob = lookup_(key);  // throws when the archive lacks the entry
    if (!need || *need > blob.size())
      fail("storage '" + printable(key) + "' claims " + std::to_string(numel) + " elements of " +
           std::string(dtype_name(dt)) + ", but its data holds only " + std::to_string(blob.size()) +
           " bytes (corrupt or hostile checkpoint)");
    storages_.push_back({dt, blob.data(), static_cast<std::uint64_t>(numel), key});
    return make({.kind = Kind::Storage, .ref = static_cast<std::uint32_t>(storages_.size() - 1)});
  }

  std::vector<std::int64_t> int_tuple(std::uint32_t i, const char* what) {
    const std::uint32_t ref = expect(i, Kind::Tuple, what);
    if (lists_[ref].size() > 64) fail_op(std::string(what) + " has more than 64 dimensions");
    std::vector<std::int64_t> v;
    for (std::uint32_t e : lists_[ref]) v.push_back(integer(e, what));
    return v;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, ...): a view into the storage. Only contiguous
  // row-major views are accepted, because RawTensor is always contiguous.
  std::uint32_t rebuild_tensor(const std::vector<std::uint32_t>& a) {
    const Storage& s = storages_[expect(a[0], Kind::Storage, "_rebuild_tensor_v2's storage argument")];
    const std::int64_t offset = integer(a[1], "storage offset");
    TensorRec rec;
    rec.t.dtype = s.dtype;
    rec.t.shape = int_tuple(a[2], "tensor size");
    const std::vector<std::int64_t> stride = int_tuple(a[3], "tensor stride");
    rec.t.owner = owner_;
    rec.t.file = file_;
    const auto elems = checked_byte_size(rec.t.shape, 1);
    if (stride.size() != rec.t.shape.size()) {
      rec.problem = "size " + shape_to_string(rec.t.shape) + " and stride " + shape_to_string(stride) +
                    " have different lengths";
    } else if (!elems) {
      rec.problem = "size " + shape_to_string(rec.t.shape) + " is negative or overflows";
    } else if (offset < 0 || static_cast<std::uint64_t>(offset) > s.numel || *elems > s.numel - offset) {
      rec.problem = "elements [" + std::to_string(offset) + ", " + std::to_string(offset) + " + " +
                    std::to_string(*elems) + ") run past the end of storage '" + printable(s.key) + "' (" +
                    std::to_string(s.numel) + " elements)";
    } else {
      std::int64_t expected = 1;
      if (*elems > 0)
        for (std::size_t d = rec.t.shape.size(); d-- > 0;) {
          if (rec.t.shape[d] != 1 && stride[d] != expected) {
            rec.problem = "size " + shape_to_string(rec.t.shape) + " with stride " + shape_to_string(stride) +
                          " is not contiguous row-major; re-save it after tensor.contiguous(), or convert the "
                          "checkpoint to safetensors";
            break;
          }
          expected *= rec.t.shape[d];
        }
      rec.t.data = s.data + static_cast<std::size_t>(offset) * dtype_size(s.dtype);
    }
    tensors_.push_back(std::move(rec));
    return make({.kind = Kind::Tensor, .ref = static_cast<std::uint32_t>(tensors_.size() - 1)});
  }

  std::uint32_t call(Fn fn, const std::vector<std::uint32_t>& a, bool nested = false) {
    auto arity = [&](std::size_t lo, std::size_t hi, const char* name) {
      if (a.size() < lo || a.size() > hi)
        fail_op(std::string(name) + " called with " + std::to_string(a.size()) + " arguments");
    };
    switch (fn) {
      case Fn::OrderedDict:
        arity(0, 0, "collections.OrderedDict");
        return make_list(Kind::Dict, {});
      case Fn::RebuildTensorV2:
        arity(6, 7, "torch._utils._rebuild_tensor_v2");  // requires_grad, backward_hooks, metadata: ignored
        return rebuild_tensor(a);
      case Fn::RebuildTensor:
        arity(4, 4, "torch._utils._rebuild_tensor");
        return rebuild_tensor(a);
      case Fn::RebuildParameter:
      case Fn::RebuildParameterWithState:
        arity(fn == Fn::RebuildParameter ? 3 : 4, fn == Fn::RebuildParameter ? 3 : 4, "torch._utils._rebuild_parameter");
        expect(a[0], Kind::Tensor, "nn.Parameter's data");
        return a[0];
      case Fn::RebuildFromTypeV2: {  // (func, type, args, state): func(*args), a plain tensor or parameter type
        arity(4, 4, "torch._tensor._rebuild_from_type_v2");
        const Obj f = obj(a[0]);
        if (nested || f.kind != Kind::Global ||
            (f.fn != Fn::RebuildTensorV2 && f.fn != Fn::RebuildTensor && f.fn != Fn::RebuildParameter))
          fail_op("_rebuild_from_type_v2 with an unsupported function");
        if (obj(a[1]).kind != Kind::Global || obj(a[1]).fn != Fn::TensorType)
          fail_op("_rebuild_from_type_v2 with an unsupported tensor type");
        const std::vector<std::uint32_t> inner = lists_[expect(a[2], Kind::Tuple, "_rebuild_from_type_v2's args")];
        return call(f.fn, inner, true);
      }
      case Fn::TensorType:
      case Fn::StorageType:
        break;
    }
    fail_op("pickle instantiates a tensor or storage class directly, which a state dict never does");
  }

  // ---- the interpreter ----
  std::uint32_t execute() {
    while (true) {
      if (pos_ >= p_.size()) fail("pickle is truncated (it ends without a STOP opcode)");
      op_pos_ = pos_;
      const std::uint8_t op = u8();
      switch (op) {
        case 0x80: {  // PROTO
          const std::uint8_t v = u8();
          if (v > 5) fail_op("unknown pickle protocol " + std::to_string(v));
          break;
        }
        case 0x95: take(8); break;  // FRAME: a length hint only
        case '.': return pop();     // STOP
        case '(':
          if (marks_.size() >= lim_.max_marks)
            fail_op("MARKs nest deeper than " + std::to_string(lim_.max_marks) + " (a state dict needs a few)");
          marks_.push_back(stack_.size());
          break;
        case '0':  // POP: pops a MARK when nothing sits above it, as CPython does
          if (stack_.size() > base()) stack_.pop_back();
          else pop_mark();
          break;
        case '1': pop_mark(); break;
        case '2': push(top()); break;
        case 'N': push(none_); break;
        case 0x88: push(true_); break;
        case 0x89: push(false_); break;
        case 'J': push(make_int(static_cast<std::int32_t>(u32()))); break;
        case 'K': push(make_int(u8())); break;
        case 'M': push(make_int(u16())); break;
        case 0x8a:
        case 0x8b: {  // LONG1, LONG4: little-endian two's complement
          const std::uint64_t n = op == 0x8a ? u8() : u32();
          if (n > 8) fail_op("integer wider than 64 bits");
          const std::byte* b = take(n);
          std::uint64_t v = 0;
          for (std::uint64_t k = 0; k < n; ++k) v |= std::to_integer<std::uint64_t>(b[k]) << (8 * k);
          if (n > 0 && n < 8 && (std::to_integer<unsigned>(b[n - 1]) & 0x80)) v |= ~std::uint64_t{0} << (8 * n);
          push(make_int(static_cast<std::int64_t>(v)));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const std::byte* b = take(8);
          std::uint64_t v = 0;
          for (int k = 0; k < 8; ++k) v = (v << 8) | std::to_integer<std::uint64_t>(b[k]);
          push(make({.kind = Kind::Float, .f = std::bit_cast<double>(v)}));
          break;
        }
        case 'X': push(make_string(Kind::Str, text(u32()))); break;
        case 0x8c: push(make_string(Kind::Str, text(u8()))); break;
        case 0x8d: push(make_string(Kind::Str, text(u64()))); break;
        case 'U': push(make_string(Kind::Str, text(u8()))); break;  // Python 2 str
        case 'T': {
          const std::int32_t n = static_cast<std::int32_t>(u32());
          if (n < 0) fail_op("negative string length");
          push(make_string(Kind::Str, text(static_cast<std::uint64_t>(n))));
          break;
        }
        case 'C': push(make_string(Kind::Bytes, text(u8()))); break;
        case 'B': push(make_string(Kind::Bytes, text(u32()))); break;
        case 0x8e: push(make_string(Kind::Bytes, text(u64()))); break;
        case '}': push(make_list(Kind::Dict, {})); break;
        case ']': push(make_list(Kind::List, {})); break;
        case ')': push(make_list(Kind::Tuple, {})); break;
        case 't': push(make_list(Kind::Tuple, pop_mark())); break;
        case 'l': push(make_list(Kind::List, pop_mark())); break;
        case 'd': {
          auto items = pop_mark();
          if (items.size() % 2) fail_op("odd number of items for a dict");
          push(make_list(Kind::Dict, std::move(items)));
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          const std::size_t n = op - 0x84u;
          std::vector<std::uint32_t> items(n);
          for (std::size_t k = n; k-- > 0;) items[k] = pop();
          push(make_list(Kind::Tuple, std::move(items)));
          break;
        }
        case 's': {
          const std::uint32_t v = pop(), k = pop();
          const std::uint32_t d = expect(top(), Kind::Dict, "SETITEM target");
          count_items(2);
          lists_[d].push_back(k);
          lists_[d].push_back(v);
          break;
        }
        case 'u': {
          auto items = pop_mark();
          if (items.size() % 2) fail_op("odd number of items for SETITEMS");
          const std::uint32_t d = expect(top(), Kind::Dict, "SETITEMS target");
          count_items(items.size());
          lists_[d].insert(lists_[d].end(), items.begin(), items.end());
          break;
        }
        case 'a': {
          const std::uint32_t v = pop();
          const std::uint32_t l = expect(top(), Kind::List, "APPEND target");
          count_items(1);
          lists_[l].push_back(v);
          break;
        }
        case 'e': {
          auto items = pop_mark();
          const std::uint32_t l = expect(top(), Kind::List, "APPENDS target");
          count_items(items.size());
          lists_[l].insert(lists_[l].end(), items.begin(), items.end());
          break;
        }
        case 'q': memo_put(u8()); break;
        case 'r': memo_put(u32()); break;
        case 0x94: memo_put(static_cast<std::uint32_t>(memo_.size())); break;
        case 'h': memo_get(u8()); break;
        case 'j': memo_get(u32()); break;
        case 'c': {
          const std::string_view module = line();
          const std::string_view name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const std::uint32_t name = pop(), module = pop();
          push(global(str(module, "STACK_GLOBAL module"), str(name, "STACK_GLOBAL name")));
          break;
        }
        case 'i': {  // INST: names its class inline; refuse naming it
          const std::string_view module = line();
          const std::string_view name = line();
          global(module, name);
          fail_op("pickle instantiates class '" + printable(module) + "." + printable(name) +
                  "', which a state dict never needs; refusing to load");
        }
        case 'o':
        case 0x81:
        case 0x92:
          fail_op("pickle instantiates a class object, which a state dict never needs; refusing to load");
        case 'R': {
          const std::uint32_t args = pop(), fn = pop();
          if (obj(fn).kind != Kind::Global) fail_op(std::string("REDUCE on a ") + kind_name(obj(fn).kind));
          const std::vector<std::uint32_t> a = lists_[expect(args, Kind::Tuple, "REDUCE arguments")];
          push(call(obj(fn).fn, a));
          break;
        }
        case 'b': {  // BUILD: only a dict's attribute state (Module.state_dict()'s `_metadata`), which is ignored
          pop();
          if (obj(top()).kind != Kind::Dict)
            fail_op(std::string("BUILD (setting object state) on a ") + kind_name(obj(top()).kind) +
                    " is not supported");
          break;
        }
        case 'Q': push(persistent_load(pop())); break;
        default: {
          const char* n = opcode_name(op);
          fail_op(n ? "opcode is not supported in a state dict" : "unknown pickle opcode (corrupt file?)");
        }
      }
    }
  }

  void memo_put(std::uint32_t idx) {
    if (memo_.size() >= lim_.max_objects && !memo_.count(idx)) fail_op("pickle memo grows too large");
    memo_[idx] = top();
  }
  void memo_get(std::uint32_t idx) {
    const auto it = memo_.find(idx);
    if (it == memo_.end()) fail_op("memo entry " + std::to_string(idx) + " was never stored (corrupt pickle)");
    push(it->second);
  }

  // The unpickled value must be a dict of name -> tensor. Other values (ints, nested metadata) are skipped.
  std::vector<RawTensor> state_dict(std::uint32_t result) {
    const Obj r = obj(result);
    if (r.kind != Kind::Dict)
      fail(std::string("pickle holds a ") + kind_name(r.kind) + ", not a state dict (a dict of tensors)");
    const std::vector<std::uint32_t>& kv = lists_[r.ref];
    std::vector<RawTensor> out;
    std::unordered_set<std::string> seen;
    std::string nested;
    for (std::size_t k = 0; k + 1 < kv.size(); k += 2) {
      const Obj key = obj(kv[k]), val = obj(kv[k + 1]);
      if (key.kind != Kind::Str) {
        if (val.kind == Kind::Tensor) fail(std::string("state dict has a ") + kind_name(key.kind) + " key");
        continue;
      }
      const std::string& name = strings_[key.ref];
      if (val.kind == Kind::Tensor) {
        const TensorRec& rec = tensors_[val.ref];
        if (!rec.problem.empty()) fail("tensor '" + printable(name, 300) + "': " + rec.problem);
        if (!seen.insert(name).second) fail("tensor '" + printable(name, 300) + "' appears twice");
        RawTensor t = rec.t;
        t.name = name;
        out.push_back(std::move(t));
      } else if (val.kind == Kind::Dict && nested.empty()) {
        const auto& inner = lists_[val.ref];
        for (std::size_t m = 1; m < inner.size(); m += 2)
          if (obj(inner[m]).kind == Kind::Tensor) nested = name;
      }
    }
    if (out.empty() && !nested.empty())
      fail("the tensors are nested under key '" + printable(nested) +
           "' (a training checkpoint?); expected a flat state dict of tensors");
    return out;
  }

  std::span<const std::byte> p_;
  std::size_t pos_ = 0, op_pos_ = 0;
  const StorageLookup& lookup_;
  std::shared_ptr<const void> owner_;
  const std::string& file_;
  UnpickleLimits lim_;

  std::vector<Obj> objs_;
  std::vector<std::string> strings_;
  std::vector<std::vector<std::uint32_t>> lists_;
  std::vector<Storage> storages_;
  std::vector<TensorRec> tensors_;
  std::size_t items_ = 0;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint32_t, std::uint32_t> memo_;
  std::uint32_t none_ = 0, true_ = 0, false_ = 0;
};

}  // namespace

std::vector<RawTensor> unpickle_state_dict(std::span<const std::byte> pickle, const StorageLookup& storage,
                                           std::shared_ptr<const void> owner, const std::string& file,
                                           const UnpickleLimits& limits) {
  return Unpickler(pickle, storage, std::move(owner), file, limits).run();
}

std::vector<RawTensor> read_torch_checkpoint(const std::filesystem::path& path) {
  const std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  const std::string fname = file->name();
  auto fail = [&](const std::string& msg) { throw InputError(fname + ": " + msg); };

  const auto head = file->bytes();
  const bool tar = head.size() >= 262 && std::memcmp(head.data() + 257, "ustar", 5) == 0;
  if ((!head.empty() && head[0] == std::byte{0x80}) || tar)
    fail("this is a legacy (pre-1.6) PyTorch checkpoint, not a zip archive; re-save it with a newer "
         "PyTorch (1.6 or later, whose torch.save writes the zip format) or convert it to safetensors");
  if (!ZipArchive::looks_like_zip(head))
    fail("not a PyTorch checkpoint (expected the zip archive torch.save writes)");
  const ZipArchive zip(file);

  // The pickle is "<prefix>/data.pkl"; its storages are "<prefix>/data/<key>".
  const ZipArchive::Entry* pkl = nullptr;
  std::string prefix;
  for (const auto& e : zip.entries()) {
    const std::size_t slash = e.name.find('/');
    if (slash == 0 || slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0)
      continue;
    if (pkl != nullptr) fail("zip archive holds two data.pkl entries");
    pkl = &e;
    prefix = e.name.substr(0, slash);
  }
  if (pkl == nullptr) fail("zip archive has no <name>/data.pkl entry, so it is not a PyTorch checkpoint");

  const UnpickleLimits limits;
  if (pkl->size > limits.max_pickle_bytes)
    fail("data.pkl claims " + std::to_string(pkl->size) + " bytes, over the limit of " +
         std::to_string(limits.max_pickle_bytes) + " bytes for a state dict");
  const auto pickle = zip.stored_bytes(*pkl);
  if (crc32(pickle) != pkl->crc32) fail("data.pkl fails its CRC check (corrupt archive)");
  if (const auto* bo = zip.find(prefix + "/byteorder")) {
    const auto b = zip.stored_bytes(*bo);
    const std::string_view order(reinterpret_cast<const char*>(b.data()), std::min<std::size_t>(b.size(), 16));
    if (order != "little") fail("checkpoint byte order is '" + printable(order) + "'; only little-endian is supported");
  }

  const StorageLookup lookup = [&](const std::string& key) {
    const auto* e = zip.find(prefix + "/data/" + key);
    if (e == nullptr)
      fail("pickle refers to storage '" + printable(key) + "', but the archive has no entry " + printable(prefix) +
           "/data/" + printable(key));
    return zip.stored_bytes(*e);
  };
  return unpickle_state_dict(pickle, lookup, file, fname, limits);
}

}  // namespace rptq
