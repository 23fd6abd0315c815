"""Public metadata of the synthetic Shandong datasets written by `sandbox.generate`.

City parameters, categories, bounds and the manifest of every dataset. Every number here is
public, approximate domain knowledge (census shares, district lists, regulated bounds), never
read off real records. The cities differ on purpose, so that the
datasets built from them are non-IID across department nodes: population size, age
structure, urban share, education, wages, industry mix and credit risk all vary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Five-year age bands 0-4, 5-9, ..., 100-104: shares (%) close to China's 2020 census.
AGE_BAND_SHARES: tuple[float, ...] = (
    5.4, 6.4, 6.0, 5.2, 5.3, 6.6, 8.7, 6.8, 6.6, 8.2, 8.7,
    7.1, 5.2, 5.5, 3.8, 2.4, 1.6, 0.8, 0.3, 0.06, 0.01,
)  # fmt: skip

EDUCATION: tuple[str, ...] = ("小学及以下", "初中", "高中", "大专", "本科", "研究生")

# 国民经济行业分类 (GB/T 4754) sections most common among small and medium enterprises.
INDUSTRIES: tuple[str, ...] = (
    "农林牧渔业",
    "制造业",
    "建筑业",
    "批发和零售业",
    "交通运输、仓储和邮政业",
    "住宿和餐饮业",
    "信息传输、软件和信息技术服务业",
    "房地产业",
    "租赁和商务服务业",
    "科学研究和技术服务业",
)


@dataclass(frozen=True)
class IndustryTraits:
    """Typical size, productivity, tax burden, credit risk and wage level of one industry."""

    employees_median: float  # persons
    revenue_per_employee: float  # 万元 per employee and year, median
    tax_rate: float  # taxes paid as a share of revenue
    risk: float  # additive term on the log-odds of loan default
    wage: float  # contribution base relative to the city median


INDUSTRY_TRAITS: tuple[IndustryTraits, ...] = (
    IndustryTraits(8, 25, 0.006, 0.35, 0.75),
    IndustryTraits(25, 60, 0.040, 0.10, 1.00),
    IndustryTraits(20, 50, 0.030, 0.45, 0.95),
    IndustryTraits(6, 90, 0.020, 0.20, 0.85),
    IndustryTraits(15, 55, 0.030, 0.05, 1.00),
    IndustryTraits(10, 15, 0.020, 0.55, 0.70),
    IndustryTraits(12, 45, 0.050, -0.15, 1.50),
    IndustryTraits(10, 120, 0.070, 0.60, 1.10),
    IndustryTraits(8, 40, 0.040, 0.20, 1.00),
    IndustryTraits(10, 40, 0.040, -0.25, 1.30),
)


@dataclass(frozen=True)
class District:
    """A county-level division: name, relative population and probability of urban hukou."""

    name: str
    population: float  # 万人, approximate (2020 census)
    urban: float


@dataclass(frozen=True)
class CityProfile:
    """Public parameters of one city."""

    code: str  # dataset name prefix, e.g. "jinan"
    name: str  # Chinese name, e.g. "济南"
    admin_code: str  # 6-digit administrative division code, used as pseudonym prefix
    population: float  # 万人, resident population (2020 census, rounded)
    districts: tuple[District, ...]
    age_tilt: float  # > 0 means an older population than the national pyramid
    education_shift: float  # shifts the latent education score
    wage: float  # median monthly contribution base, 元
    visit_rate: float  # multiplier on hospital visit rates
    industry_weights: tuple[float, ...]  # over INDUSTRIES
    default_rate: float  # target share of enterprises that default on a loan
    years_operating: float  # mean age of enterprises, years
    formality: float  # shifts the share of employees covered by social insurance


PROFILES: tuple[CityProfile, ...] = (
    CityProfile(
        code="jinan",
        name="济南",
        admin_code="370100",
        population=920,
        districts=(
            District("历下区", 82, 0.96),
            District("市中区", 93, 0.95),
            District("槐荫区", 62, 0.93),
            District("天桥区", 75, 0.92),
            District("历城区", 135, 0.78),
            District("长清区", 61, 0.60),
            District("章丘区", 107, 0.62),
            District("济阳区", 56, 0.50),
            District("莱芜区", 99, 0.62),
            District("钢城区", 30, 0.65),
            District("平阴县", 33, 0.38),
            District("商河县", 52, 0.32),
        ),
        age_tilt=0.0,
        education_shift=0.35,
        wage=7200,
        visit_rate=1.0,
        industry_weights=(0.03, 0.16, 0.10, 0.26, 0.05, 0.07, 0.10, 0.04, 0.11, 0.08),
        default_rate=0.06,
        years_operating=9.0,
        formality=0.3,
    ),
    CityProfile(
        code="qingdao",
        name="青岛",
        admin_code="370200",
        population=1007,
        districts=(
            District("市南区", 51, 0.98),
            District("市北区", 104, 0.97),
            District("黄岛区", 190, 0.80),
            District("崂山区", 53, 0.90),
            District("李沧区", 76, 0.95),
            District("城阳区", 112, 0.85),
            District("即墨区", 134, 0.60),
            District("胶州市", 101, 0.58),
            District("平度市", 118, 0.40),
            District("莱西市", 70, 0.42),
        ),
        age_tilt=-0.05,
        education_shift=0.30,
        wage=7400,
        visit_rate=1.0,
        industry_weights=(0.03, 0.27, 0.08, 0.24, 0.10, 0.07, 0.06, 0.04, 0.07, 0.04),
        default_rate=0.05,
        years_operating=10.0,
        formality=0.4,
    ),
    CityProfile(
        code="rizhao",
        name="日照",
        admin_code="371100",
        population=297,
        districts=(
            District("东港区", 105, 0.80),
            District("岚山区", 43, 0.65),
            District("五莲县", 48, 0.40),
            District("莒县", 100, 0.35),
        ),
        age_tilt=0.08,
        education_shift=0.0,
        wage=6000,
        visit_rate=0.9,
        industry_weights=(0.08, 0.22, 0.09, 0.24, 0.12, 0.08, 0.03, 0.04, 0.07, 0.03),
        default_rate=0.09,
        years_operating=8.0,
        formality=0.0,
    ),
    CityProfile(
        code="dezhou",
        name="德州",
        admin_code="371400",
        population=561,
        districts=(
            District("德城区", 71, 0.90),
            District("陵城区", 51, 0.48),
            District("禹城市", 52, 0.45),
            District("乐陵市", 62, 0.42),
            District("临邑县", 48, 0.38),
            District("平原县", 42, 0.38),
            District("夏津县", 48, 0.35),
            District("武城县", 36, 0.38),
            District("齐河县", 62, 0.45),
            District("宁津县", 41, 0.38),
            District("庆云县", 30, 0.40),
        ),
        age_tilt=0.30,
        education_shift=-0.15,
        wage=5600,
        visit_rate=0.95,
        industry_weights=(0.20, 0.25, 0.09, 0.22, 0.05, 0.07, 0.02, 0.03, 0.05, 0.02),
        default_rate=0.12,
        years_operating=7.0,
        formality=-0.3,
    ),
)

PROFILE_BY_CODE: dict[str, CityProfile] = {p.code: p for p in PROFILES}

DATASET_KINDS: tuple[str, ...] = (
    "population",
    "social_insurance",
    "tax",
    "hospital_visits",
    "enterprise",
)
REFERENCE_YEAR = 2024
SEX = ("男", "女")
HOUSEHOLD_TYPES = ("城镇", "农村")
TAXPAYER_TYPES = ("个人", "企业")


@dataclass(frozen=True)
class Diagnosis:
    """An ICD-10 chapter: how common it is per age group, what it costs, how often inpatient."""

    name: str  # chapter title of the Chinese edition
    mix: tuple[float, float, float, float]  # relative frequency at ages <15, 15-44, 45-64, 65+
    cost: float  # cost multiplier against an average visit
    inpatient: float  # share of visits that are inpatient stays


DIAGNOSIS_TRAITS: tuple[Diagnosis, ...] = (
    Diagnosis("某些传染病和寄生虫病", (10, 4, 2, 1.5), 1.0, 0.08),
    Diagnosis("肿瘤", (0.3, 2, 6, 9), 3.0, 0.45),
    Diagnosis("内分泌、营养和代谢疾病", (1, 4, 9, 11), 1.3, 0.08),
    Diagnosis("精神和行为障碍", (1, 4, 3, 3), 1.5, 0.08),
    Diagnosis("神经系统疾病", (2, 4, 5, 7), 1.4, 0.12),
    Diagnosis("眼和附器疾病", (4, 4, 5, 6), 1.0, 0.05),
    Diagnosis("耳和乳突疾病", (4, 3, 3, 3), 0.9, 0.03),
    Diagnosis("循环系统疾病", (0.5, 4, 17, 26), 1.4, 0.25),
    Diagnosis("呼吸系统疾病", (38, 20, 14, 15), 0.9, 0.08),
    Diagnosis("消化系统疾病", (10, 14, 12, 9), 1.1, 0.12),
    Diagnosis("皮肤和皮下组织疾病", (6, 6, 4, 2), 0.8, 0.02),
    Diagnosis("肌肉骨骼系统和结缔组织疾病", (1, 8, 10, 8), 1.2, 0.10),
    Diagnosis("泌尿生殖系统疾病", (1, 7, 5, 5), 1.1, 0.10),
    Diagnosis("妊娠、分娩和产褥期", (0, 6, 0, 0), 1.5, 0.50),  # women 15-49 only
    Diagnosis("损伤、中毒和外因的某些其他后果", (10, 9, 5, 4), 1.3, 0.20),
    Diagnosis("症状、体征和临床与实验室异常所见", (9, 7, 6, 6), 0.9, 0.05),
)
DIAGNOSES: tuple[str, ...] = tuple(d.name for d in DIAGNOSIS_TRAITS)
# Public bounds. The contribution base is the 2024 Shandong range (60%-300% of the
# provincial average wage); money in the tax table is 元, in the enterprise register 万元.
CONTRIBUTION_BASE = (4416.0, 22080.0)
INCOME_OR_REVENUE = (0.0, 500_000_000.0)
TAX_PAID = (0.0, 100_000_000.0)
VISIT_COST = (0.0, 500_000.0)
MAX_VISITS_PER_PERSON = 20
EMPLOYEES = (1, 20_000)
REGISTERED_CAPITAL = (0.0, 100_000.0)
YEARS_OPERATING = (0, 60)
ANNUAL_REVENUE = (0.0, 50_000.0)
ENTERPRISE_TAX_PAID = (0.0, 5_000.0)
TAX_ARREARS_MONTHS = (0, 36)


# ------------------------------------------------------------------------- manifests


def _column(name: str, type_: str, description: str, **extra: Any) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_}
    if extra.pop("identifier", False):
        column["role"] = "identifier"
    for key in ("bounds", "categories"):
        if key in extra:
            column[key] = list(extra.pop(key))
    column["description"] = description
    return column


def manifest(p: CityProfile, kind: str) -> dict[str, Any]:
    """The manifest (docs/catalog.md) of dataset `{p.code}_{kind}`, as a YAML-ready dict."""
    city = p.name
    person = _column("person_id", "string", "个人标识（假名化）", identifier=True)
    base = {"bounds": CONTRIBUTION_BASE}
    specs: dict[str, tuple[str, str, str, str, str, int, list[dict[str, Any]]]] = {
        "population": (
            f"{city}市人口登记",
            f"{city}市公安局",
            "户籍人口基本信息（假名化，合成数据）",
            "敏感",
            "person_id",
            1,
            [
                person,
                _column("birth_year", "int", "出生年份", bounds=(1920, REFERENCE_YEAR)),
                _column("sex", "string", "性别", categories=SEX),
                _column(
                    "district",
                    "string",
                    "户籍所在区县",
                    categories=tuple(d.name for d in p.districts),
                ),
                _column("household_type", "string", "户口性质", categories=HOUSEHOLD_TYPES),
                _column("education", "string", "最高学历", categories=EDUCATION),
            ],
        ),
        "social_insurance": (
            f"{city}市社会保险参保登记",
            f"{city}市人力资源和社会保障局",
            "职工基本养老保险参保与缴费信息（合成数据）",
            "敏感",
            "person_id",
            1,
            [
                person,
                _column("employer_id", "string", "参保单位标识（假名化）", identifier=True),
                _column("monthly_contribution_base", "float", "月缴费基数（元）", **base),
                _column("insured_months", "int", "累计缴费月数", bounds=(0, 600)),
            ],
        ),
        "tax": (
            f"{city}市纳税人年度申报",
            f"国家税务总局{city}市税务局",
            "个人综合所得与企业年度申报汇总（合成数据）",
            "敏感",
            "taxpayer_id",
            1,
            [
                _column("taxpayer_id", "string", "纳税人标识（假名化）", identifier=True),
                _column("taxpayer_type", "string", "纳税人类型", categories=TAXPAYER_TYPES),
                _column(
                    "income_or_revenue",
                    "float",
                    "年收入（个人）或营业收入（企业），元",
                    bounds=INCOME_OR_REVENUE,
                ),
                _column("tax_paid", "float", "年度已缴税额（元）", bounds=TAX_PAID),
            ],
        ),
        "hospital_visits": (
            f"{city}市医疗机构就诊记录",
            f"{city}市卫生健康委员会",
            f"{REFERENCE_YEAR}年门诊与住院就诊记录（合成数据）",
            "敏感",
            "person_id",
            MAX_VISITS_PER_PERSON,
            [
                person,
                _column(
                    "visit_date",
                    "date",
                    "就诊日期",
                    bounds=(f"{REFERENCE_YEAR}-01-01", f"{REFERENCE_YEAR}-12-31"),
                ),
                _column(
                    "diagnosis_category", "string", "主要诊断（ICD-10 章）", categories=DIAGNOSES
                ),
                _column("cost", "float", "医疗费用（元）", bounds=VISIT_COST),
            ],
        ),
        "enterprise": (
            f"{city}市企业信用信息",
            f"{city}市大数据局",
            "智慧金融：企业经营、纳税、社保与贷款违约信息（合成数据）",
            "内部",
            "enterprise_id",
            1,
            [
                _column("enterprise_id", "string", "企业标识（假名化）", identifier=True),
                _column(
                    "industry", "string", "所属行业（国民经济行业门类）", categories=INDUSTRIES
                ),
                _column("employees", "int", "从业人数", bounds=EMPLOYEES),
                _column(
                    "registered_capital", "float", "注册资本（万元）", bounds=REGISTERED_CAPITAL
                ),
                _column("years_operating", "int", "经营年限（年）", bounds=YEARS_OPERATING),
                _column("annual_revenue", "float", "年营业收入（万元）", bounds=ANNUAL_REVENUE),
                _column("tax_paid", "float", "年纳税额（万元）", bounds=ENTERPRISE_TAX_PAID),
                _column(
                    "tax_arrears_months",
                    "int",
                    "近三年欠税月数",
                    bounds=TAX_ARREARS_MONTHS,
                ),
                _column("insured_employees", "int", "参保职工人数", bounds=(0, EMPLOYEES[1])),
                _column("avg_contribution_base", "float", "职工平均缴费基数（元）", **base),
                _column("default", "int", "贷款是否违约（1=违约）", bounds=(0, 1)),
            ],
        ),
    }
    title, department, description, classification, unit, max_rows, columns = specs[kind]
    name = f"{p.code}_{kind}"
    return {
        "name": name,
        "title": title,
        "department": department,
        "city": city,
        "description": description,
        "file": f"{name}.parquet",
        "classification": classification,
        "privacy_unit": {"id_column": unit, "max_rows": max_rows},
        "columns": columns,
    }
