#include "elf_check.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "kvq_client/error.hpp"
#include "text.hpp"

namespace kvq::client::detail {
namespace {

// What this process can map: a library of another class, byte order or
// machine would make dlopen fail with a terse message at best.
#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
#else
constexpr uint16_t kHostMachine = EM_NONE;  // no machine check on other hosts
#endif
constexpr bool kHostLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

std::string machine_name(uint16_t machine) {
  switch (machine) {
    case EM_X86_64: return "x86-64";
    case EM_AARCH64: return "AArch64";
    case EM_386: return "i386";
    case EM_ARM: return "32-bit ARM";
    case EM_PPC64: return "PowerPC 64";
    case EM_RISCV: return "RISC-V";
    case EM_S390: return "s390";
    default: return cat("ELF machine ", machine);
  }
}

[[noreturn]] void refuse(const std::filesystem::path& path, const std::string& why) {
  throw Error(cat("plugin ", path.string(), ": ", why));
}

}  // namespace

// dlopen maps a library's segments straight from the file: a library cut
// short (an interrupted copy, a full disk) is mapped past its end and the
// process dies of SIGBUS on first touch, long after dlopen returned. So the
// header and every loadable segment are checked against the file size first,
// and a library for another machine is named as such.
void check_elf_library(const std::filesystem::path& path, uint64_t file_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) refuse(path, "cannot be opened for reading");
  Elf64_Ehdr header{};
  in.read(reinterpret_cast<char*>(&header), sizeof header);
  const auto got = static_cast<uint64_t>(in.gcount());
  if (got < EI_NIDENT || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) {
    refuse(path, "not a shared library (no ELF header)");
  }
  if (header.e_ident[EI_CLASS] != ELFCLASS64) {
    refuse(path, "a 32-bit ELF file; this process loads 64-bit libraries only");
  }
  if ((header.e_ident[EI_DATA] == ELFDATA2LSB) != kHostLittleEndian) {
    refuse(path, "an ELF file of the other byte order than this machine's");
  }
  if (got < sizeof header) {
    refuse(path, cat("truncated: ", file_size, " bytes, shorter than an ELF header"));
  }
  if (header.e_type != ET_DYN) {
    refuse(path, "an ELF file that is not a shared library (not ET_DYN)");
  }
  if (kHostMachine != EM_NONE && header.e_machine != kHostMachine) {
    refuse(path, cat("built for ", machine_name(header.e_machine), "; this process runs on ",
                     machine_name(kHostMachine)));
  }
  if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phnum == 0) {
    refuse(path, "damaged ELF header (no program header table)");
  }
  const uint64_t table_end =
      header.e_phoff + static_cast<uint64_t>(header.e_phnum) * sizeof(Elf64_Phdr);
  if (header.e_phoff > file_size || table_end > file_size) {
    refuse(path, cat("truncated: the program headers end at byte ", table_end, ", the file has ",
                     file_size, " bytes"));
  }
  std::vector<Elf64_Phdr> segments(header.e_phnum);
  in.seekg(static_cast<std::streamoff>(header.e_phoff));
  in.read(reinterpret_cast<char*>(segments.data()),
          static_cast<std::streamsize>(segments.size() * sizeof(Elf64_Phdr)));
  if (!in) refuse(path, "cannot read its program headers");
  for (size_t i = 0; i < segments.size(); ++i) {
    const Elf64_Phdr& s = segments[i];
    if (s.p_type != PT_LOAD && s.p_type != PT_DYNAMIC) continue;
    const uint64_t end = s.p_offset + s.p_filesz;
    if (end < s.p_offset || end > file_size) {
      refuse(path, cat("truncated: loadable segment ", i, " needs bytes up to ", end,
                       ", the file has ", file_size, " (an interrupted copy?)"));
    }
  }
  // The section headers sit at the very end of a library: dlopen does not
  // need them, but a file that lost them was cut short and cannot be trusted.
  if (header.e_shoff != 0) {
    const uint64_t sections_end =
        header.e_shoff + static_cast<uint64_t>(header.e_shnum) * header.e_shentsize;
    if (sections_end > file_size) {
      refuse(path, cat("truncated: the section headers end at byte ", sections_end,
                       ", the file has ", file_size, " bytes (an interrupted copy?)"));
    }
  }
}

}  // namespace kvq::client::detail
