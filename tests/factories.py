import factory

from messaging.models import Group, GroupMember
from org.credentials import hash_password
from org.models import Department, Employee


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department

    department_id = factory.Sequence(lambda n: f"dept_test_{n:03d}")
    name = factory.Sequence(lambda n: f"部门{n}")


class EmployeeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Employee

    employee_id = factory.Sequence(lambda n: f"emp_test_{n:03d}")
    name = factory.Sequence(lambda n: f"员工{n}")
    # tests needing a broker login create employees via org.services, which returns the password
    mqtt_password_hash = factory.LazyFunction(lambda: hash_password("secret"))


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group

    group_id = factory.Sequence(lambda n: f"grp_test_{n:03d}")
    name = factory.Sequence(lambda n: f"群{n}")
    owner = factory.SubFactory(EmployeeFactory)


class GroupMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GroupMember

    group = factory.SubFactory(GroupFactory)
    employee = factory.SubFactory(EmployeeFactory)


def private_message_send(sender: Employee, recipient: Employee, content, **request):
    """One private message through the service (messaging.services.message_send_private):
    its Message; a refusal raises."""
    from messaging import services

    (outcome,) = services.message_send_private(
        sends=[services.PrivateSend(sender, recipient.employee_id, content, **request)]
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome.message
