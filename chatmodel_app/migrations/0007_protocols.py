from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chatmodel_app", "0006_branches")]

    operations: list = []
